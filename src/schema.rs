//! Diesel's view of the tables in `migrations/` (same on SQLite and PostgreSQL).

diesel::table! {
    users (id) {
        id -> Text,
        username -> Text,
        username_key -> Text,
        display_name -> Text,
        password_hash -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        locked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    passkeys (id) {
        id -> Text,
        user_id -> Text,
        credential_id -> Text,
        credential -> Text,
        sign_count -> BigInt,
        transports -> Text,
        nickname -> Text,
        backup_eligible -> Bool,
        backup_state -> Bool,
        created_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
        discoverable -> Nullable<Bool>,
    }
}

diesel::table! {
    auth_events (id) {
        id -> Text,
        user_id -> Nullable<Text>,
        kind -> Text,
        outcome -> Text,
        client_ip -> Text,
        user_agent -> Nullable<Text>,
        detail -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    recovery_codes (id) {
        id -> Text,
        user_id -> Text,
        code_hash -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    sessions (id) {
        id -> Text,
        user_id -> Text,
        amr -> Text,
        auth_time -> BigInt,
        client_ip -> Text,
        user_agent -> Nullable<Text>,
        created_at -> Timestamp,
        last_seen_at -> Timestamp,
        refresh_expires_at -> Timestamp,
        expires_at -> Timestamp,
        generation -> BigInt,
        ended_at -> Nullable<Timestamp>,
        end_reason -> Nullable<Text>,
    }
}

diesel::table! {
    refresh_tokens (token_hash) {
        token_hash -> Text,
        session_id -> Text,
        generation -> BigInt,
        issued_at -> Timestamp,
        rotated_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    signing_keys (kid) {
        kid -> Text,
        generation -> BigInt,
        algorithm -> Text,
        public_jwk -> Text,
        private_key -> Text,
        created_at -> Timestamp,
        activates_at -> Timestamp,
        retired_at -> Nullable<Timestamp>,
    }
}

diesel::joinable!(passkeys -> users (user_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(refresh_tokens -> sessions (session_id));
diesel::joinable!(recovery_codes -> users (user_id));
diesel::joinable!(auth_events -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(
    users,
    passkeys,
    auth_events,
    recovery_codes,
    sessions,
    refresh_tokens,
    signing_keys
);
