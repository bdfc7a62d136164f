// The demo page clicked through as a person would: sign up, log in (keyboard
// only), password level, the full-level route refused with its reason, a
// passkey registered with a nickname (its recovery codes shown once), step-up
// with it (keyboard only), the full-level route answered, rename and delete,
// a phone-width view, log out.
// Every step asserts on what the page shows and saves a screenshot under
// screenshots/happy-path/.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  ask, claimsOf, clickAndWait, eventually, expectText, idle, isDisabled, launchBrowser, message, phoneShot,
  result, scenario, shownCodes, startServer, storedTokens, tabTo, text, uniqueUsername,
} from './harness.mjs';

// After "Log out": the old tokens, used directly, are refused by the server.
async function assertSessionEnded(server, tokens) {
  for (const slot of ['password', 'full']) {
    if (!tokens[slot]) continue;
    const me = await ask(server, 'GET', '/protected/basic', { token: tokens[slot] });
    assert.equal(me.status, 401, `the old ${slot}-level access token after logout: ${me.raw}`);
    assert.equal(me.json?.code, 'invalid_token', me.raw);
  }
  const refresh = await ask(server, 'POST', '/auth/refresh', { body: { refreshToken: tokens.refresh } });
  assert.equal(refresh.status, 401, `the old refresh token after logout: ${refresh.raw}`);
  assert.equal(refresh.json?.code, 'invalid_refresh_token', refresh.raw);
}

test('happy path: sign up, log in, step up with a passkey, manage it', async (t) => {
  const server = await startServer();
  let browser;
  try {
    browser = await launchBrowser();
    const { page } = browser;
    await browser.addAuthenticator();
    const { step, shot } = scenario(t, 'happy-path', { page, server, pageErrors: browser.pageErrors });

    const username = uniqueUsername('happy');
    const password = 'correct horse battery staple';

    await step('page-loaded', async () => {
      await page.goto(`${server.baseUrl}/`);
      await expectText(page, '#auth-level', 'none');
      assert.equal(await text(page, '#claim-auth-level'), '—', 'no claims before login');
      assert.equal(await text(page, '#session-status'), 'Not logged in.');
      for (const id of ['#call-basic', '#call-full', '#register-passkey', '#verify-passkey', '#logout']) {
        assert.ok(await isDisabled(page, id), `${id} should be disabled before login`);
      }
      assert.ok(!(await isDisabled(page, '#login-submit')), 'log in should be enabled');
      assert.ok(await page.locator('#cancel-passkey').isHidden(), 'no Cancel button without a prompt');
    });

    await step('signed-up', async () => {
      await page.fill('#signup-username', username);
      await page.fill('#signup-password', password);
      await page.fill('#signup-display-name', 'Happy Path');
      await clickAndWait(page, '#signup-submit');
      const m = await message(page);
      assert.equal(m.kind, 'success', `signup message: ${m.text}`);
      assert.match(m.text, new RegExp(`Account "${username}" created`));
      await expectText(page, '#auth-level', 'password');
      await expectText(page, '#me-display-name', 'Happy Path');
    });

    await step('logged-out', async () => {
      const before = await storedTokens(page);
      assert.ok(before.password && before.refresh, 'the password-level and refresh tokens are kept');
      assert.equal(await text(page, '#claim-sid'), claimsOf(before.password).sid, 'sid shown in the claims');
      // The token names its signing key, which the linked JWKS publishes.
      const header = JSON.parse(Buffer.from(before.password.split('.')[0], 'base64url').toString('utf8'));
      assert.equal(header.alg, 'EdDSA');
      assert.equal(await text(page, '#claim-kid'), `${header.kid} (EdDSA)`, 'kid shown in the claims');
      const jwks = await page.evaluate(async () => {
        const res = await fetch(document.querySelector('#jwks-link').href);
        return { status: res.status, cache: res.headers.get('cache-control'), body: await res.json() };
      });
      assert.equal(jwks.status, 200);
      assert.match(jwks.cache, /^public, max-age=\d+$/);
      assert.ok(jwks.body.keys.some((k) => k.kid === header.kid && k.kty === 'OKP'), 'the JWKS holds the key');
      assert.equal((await ask(server, 'GET', '/protected/basic', { token: before.password })).status, 200);
      await page.click('#logout');
      await expectText(page, '#auth-level', 'none');
      const m = await message(page);
      assert.match(m.text, /Logged out: the session was ended on the server/);
      assert.ok(await isDisabled(page, '#call-basic'), 'call-basic disabled after logout');
      assert.deepEqual(await page.evaluate(() => Object.keys(sessionStorage)), [], 'every token forgotten');
      await assertSessionEnded(server, before);
    });

    await step('logged-in-with-keyboard', async () => {
      // Keyboard only: Tab from the top of the page to the login form, type, Enter.
      await page.evaluate(() => { document.activeElement?.blur(); window.scrollTo(0, 0); });
      await tabTo(page, '#login-username');
      await page.keyboard.type(username);
      await page.keyboard.press('Tab');
      assert.equal(await page.evaluate(() => document.activeElement.id), 'login-password',
        'Tab from the username goes to the password');
      await page.keyboard.type(password);
      await page.keyboard.press('Enter');
      await idle(page);
      const m = await message(page);
      assert.equal(m.kind, 'success', `login message: ${m.text}`);
      assert.match(m.text, /authLevel: password/);
      await expectText(page, '#auth-level', 'password');
      assert.equal(await page.evaluate(() => document.getElementById('account-forms').open), false,
        'the login forms fold away once logged in');
      assert.equal(await page.evaluate(() => document.activeElement.id), 'account-forms-summary',
        'keyboard focus lands on the folded forms\' summary, not on <body>');
      assert.equal(await text(page, '#claim-username'), username);
      assert.equal(await text(page, '#claim-auth-level'), 'password');
      assert.equal(await text(page, '#claim-amr'), 'pwd');
      assert.equal(await text(page, '#claim-acr'), 'password');
      assert.match(await text(page, '#claim-auth-time'), /^\d{1,2}:\d\d:\d\d.* \(0:[0-5]\d ago\)/, 'auth_time: the login, just now');
      assert.equal(await text(page, '#token-full-expiry'), 'none');
      // The expiry counts down, once a second.
      const first = await text(page, '#token-expiry');
      assert.match(first, /^\d+:\d\d(:\d\d)? \(at /, `expiry shown as a countdown: ${first}`);
      await eventually(() => text(page, '#token-expiry'), (v) => v !== first,
        '#token-expiry should count down', 3_000);
      assert.match(await text(page, '#token-password-expiry'), /^\d+:\d\d/);
      // Passkey steps: registering works, verifying needs a passkey first.
      await expectText(page, '#me-passkey-count', '0');
      await expectText(page, '#me-recovery-remaining', '0 left');
      assert.ok(await isDisabled(page, '#new-recovery-codes'), 'no recovery codes without a passkey');
      assert.ok(await page.locator('#recovery-form').isHidden(), 'no recovery-code step-up without a passkey');
      assert.ok(await isDisabled(page, '#verify-passkey'), 'verify disabled while no passkey exists');
      assert.ok(!(await isDisabled(page, '#register-passkey')), 'register enabled at password level');
      await expectText(page, '#stepup-hint', /Register a passkey/);
    });

    await step('basic-route-ok', async () => {
      await clickAndWait(page, '#call-basic');
      const r = await result(page);
      assert.equal(r.status, '200', `GET /protected/basic: ${r.body}`);
      assert.match(r.heading, /GET \/protected\/basic → HTTP 200/);
      assert.equal(r.json?.authLevel, 'password', r.body);
    }, { show: '#result' });

    await step('full-route-refused', async () => {
      await clickAndWait(page, '#call-full');
      const r = await result(page);
      assert.equal(r.status, '403', `GET /protected/full at password level: ${r.body}`);
      assert.equal(r.json?.code, 'passkey_required', r.body);
      assert.ok(r.json?.detail, 'the 403 has a detail');
      const m = await message(page);
      assert.equal(m.kind, 'error');
      assert.ok(m.text.includes(r.json.detail), `message shows the server's detail "${r.json.detail}": ${m.text}`);
      assert.match(m.text, /HTTP 403/);
      assert.match(m.text, /Verify with a passkey/);
      await expectText(page, '#auth-level', 'password');
    }, { show: '#result' });

    await step('passkey-registered', async () => {
      await page.fill('#passkey-nickname', 'Laptop key');
      await clickAndWait(page, '#register-passkey');
      const m = await message(page);
      assert.equal(m.kind, 'success', `registration message: ${m.text}`);
      assert.match(m.text, /Passkey "Laptop key" registered/);
      assert.match(m.text, /store the recovery codes/);
      const items = page.locator('#passkey-list li.passkey-item');
      assert.equal(await items.count(), 1, 'one passkey listed');
      assert.equal(await text(page, '#passkey-list .passkey-nickname'), 'Laptop key');
      await expectText(page, '#me-passkey-count', '1');
      // Still password level: renaming and deleting cannot work yet.
      await expectText(page, '#auth-level', 'password');
      assert.ok(await isDisabled(page, '#passkey-list .rename-button'), 'rename disabled at password level');
      // Deleting asks for the passkey itself when it needs it (see step-up.test.mjs).
      assert.ok(!(await isDisabled(page, '#passkey-list .delete-button')), 'delete offered at password level');
      assert.ok(!(await isDisabled(page, '#verify-passkey')), 'verify enabled once a passkey exists');
      await expectText(page, '#stepup-hint', /need a full-level token/);
      // The first passkey's recovery codes, shown once.
      assert.ok(await page.locator('#codes-panel').isVisible(), 'the recovery codes panel is shown');
      assert.equal(await text(page, '#codes-heading'),
        'Store these recovery codes now — they will not be shown again');
      assert.equal((await shownCodes(page)).length, 10, 'ten recovery codes');
      assert.equal(await page.evaluate(() => document.activeElement.id), 'codes-panel', 'focus on the codes');
      await expectText(page, '#me-recovery-remaining', '10 left');
      assert.ok(await page.locator('#recovery-form').isVisible(), 'a recovery code can stand in for the passkey');
    });

    await step('recovery-codes-stored', async () => {
      await page.click('#codes-done');
      assert.ok(await page.locator('#codes-panel').isHidden(), 'the codes panel is gone');
      assert.equal(await page.locator('#codes-list code').count(), 0, 'and its codes with it');
      assert.match((await message(page)).text, /will not be shown again/);
    });

    await step('verified-with-keyboard', async () => {
      // Keyboard only: Tab from the nickname field to "Verify with a passkey", press Enter.
      await page.focus('#passkey-nickname');
      await tabTo(page, '#verify-passkey');
      await page.keyboard.press('Enter');
      await idle(page);
      const m = await message(page);
      assert.equal(m.kind, 'success', `verification message: ${m.text}`);
      assert.match(m.text, /authLevel: full/);
      await expectText(page, '#auth-level', 'full');
      assert.equal(await text(page, '#claim-auth-level'), 'full');
      assert.equal(await text(page, '#claim-amr'), 'pwd, hwk');
      assert.equal(await text(page, '#claim-acr'), 'full');
      assert.match(await text(page, '#claim-auth-time'), /\(0:[0-5]\d ago\)/, 'auth_time: the passkey, just now');
      assert.ok(await page.locator('#recovery-form').isHidden(), 'no recovery-code step-up at full level');
      assert.match(await text(page, '#token-full-expiry'), /^\d+:\d\d/, 'full-level token countdown');
      assert.match(await text(page, '#token-password-expiry'), /^\d+:\d\d/, 'password-level token kept');
      assert.match(await text(page, '#session-status'), /with a password and a passkey/);
      assert.ok(await page.locator('#stepup-hint').isHidden(), 'no step-up hint at full level');
      assert.ok(!(await isDisabled(page, '#passkey-list .rename-button')), 'rename enabled at full level');
      assert.equal(await page.evaluate(() => document.activeElement.id), 'verify-passkey',
        'focus returns to the button after the prompt');
    });

    await step('full-route-ok', async () => {
      await clickAndWait(page, '#call-full');
      const r = await result(page);
      assert.equal(r.status, '200', `GET /protected/full at full level: ${r.body}`);
      assert.equal(r.json?.authLevel, 'full', r.body);
      assert.match((await message(page)).text, /GET \/protected\/full answered HTTP 200/);
    }, { show: '#result' });

    await step('passkey-renamed', async () => {
      const input = page.locator('#passkey-list .rename-input');
      await input.fill('Work laptop');
      await input.press('Enter'); // submits the rename form
      await idle(page);
      const m = await message(page);
      assert.equal(m.kind, 'success', `rename message: ${m.text}`);
      assert.match(m.text, /renamed to "Work laptop"/);
      await expectText(page, '#passkey-list .passkey-nickname', 'Work laptop');
    });

    await step('passkey-deleted', async () => {
      await clickAndWait(page, '#passkey-list .delete-button');
      const m = await message(page);
      assert.equal(m.kind, 'success', `delete message: ${m.text}`);
      assert.match(m.text, /Passkey "Work laptop" deleted/);
      assert.equal(await page.locator('#passkey-list li.passkey-item').count(), 0, 'no passkey left');
      await expectText(page, '#passkey-empty', 'No passkeys registered yet.');
      await expectText(page, '#me-passkey-count', '0');
      // The last passkey takes the recovery codes with it.
      await expectText(page, '#me-recovery-remaining', '0 left');
      await expectText(page, '#auth-level', 'full');
    });

    await step('phone-width', async () => {
      await phoneShot(page, shot, 'phone-width-375', ['#account-manage', '#session', '#passkeys']);
    }, { screenshot: false });

    await step('logged-out-at-the-end', async () => {
      const before = await storedTokens(page);
      assert.ok(before.full && before.password && before.refresh, 'full, password and refresh tokens held');
      assert.equal(claimsOf(before.full).sid, claimsOf(before.password).sid, 'the step-up stayed in the session');
      await page.click('#logout');
      await expectText(page, '#auth-level', 'none');
      assert.match((await message(page)).text, /Logged out: the session was ended on the server/);
      assert.equal(await text(page, '#claim-amr'), '—');
      assert.equal(await text(page, '#claim-sid'), '—');
      const stored = await page.evaluate(() => Object.keys(sessionStorage));
      assert.deepEqual(stored, [], 'every token forgotten');
      assert.ok(await isDisabled(page, '#call-full'), 'call-full disabled after logout');
      // Both access tokens of the session (password and full) and its refresh token.
      await assertSessionEnded(server, before);
    });

    await step('no-script-errors', async () => {
      assert.deepEqual(browser.pageErrors, [], 'no script errors or CSP violations on the page');
    }, { screenshot: false });
  } finally {
    await browser?.close();
    await server.stop();
  }
});
