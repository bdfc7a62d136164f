// Sessions and refresh tokens (API.md, "Sessions and refresh tokens") on the
// demo page:
// - with short-lived access tokens the page renews its password-level token
//   with the refresh token before it expires (same sid, newer iat, a new
//   refresh token each time), also when it comes back to a tab whose token
//   expired meanwhile; a tab opened from it (same sessionStorage, so the same
//   refresh token) never presents a refresh token the other one has used; a
//   rotated refresh token presented again ends the session, and the page says
//   so at its next renewal;
// - "Your sessions" on two, then three devices (browser contexts): one ends
//   another's session, whose next action shows it is logged out; "Log out
//   everywhere else" ends the rest.
// Screenshots: screenshots/sessions-*/.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  ask, claimsOf, clickAndWait, collectErrors, eventually, expectText, idle, launchBrowser, logIn, message, PHONE, phoneShot,
  registerPasskey, result, scenario, signUp, sleep, startServer, storedTokens, text, uniqueUsername,
} from './harness.mjs';

const SESSION_ENDED = /^Your session has ended \(.*\): log in again\.$/;

// Sleeps until `seconds` (unix time) is `margin` ms behind us.
async function sleepUntil(seconds, margin = 1_000) {
  const ms = seconds * 1000 + margin - Date.now();
  if (ms > 0) await sleep(ms);
}

// What the page shows once it has learnt that its session ended.
async function assertToldSessionEnded(page) {
  await expectText(page, '#auth-level', 'none');
  const m = await message(page);
  assert.match(m.text, SESSION_ENDED, `message: ${m.text}`);
  assert.equal(m.kind, 'warning');
  assert.equal(m.code, 'session_ended');
  assert.equal(await text(page, '#session-status'), 'Your session has ended: log in again.');
  assert.deepEqual(await page.evaluate(() => Object.keys(sessionStorage)), [], 'every token forgotten');
  assert.equal(await page.evaluate(() => document.getElementById('account-forms').open), true,
    'the log-in form is offered');
  await expectText(page, '#sessions-empty', 'Log in to see your sessions.');
}

test('staying logged in: the page renews its password-level token before it expires', async (t) => {
  const TTL = 12;
  const server = await startServer({ JWT_PASSWORD_TTL_SECS: String(TTL), JWT_FULL_TTL_SECS: '10' });
  let browser;
  try {
    browser = await launchBrowser();
    const { page } = browser;
    const { step, shot } = scenario(t, 'sessions-refresh', { page, server, pageErrors: browser.pageErrors });
    let first;   // the login's tokens
    let latest;  // the tokens held before leaving the page
    let live = page; // the tab that goes on with the session
    const copyErrors = [];

    await step('logged-in', async () => {
      await page.goto(`${server.baseUrl}/`);
      await signUp(page, uniqueUsername('stay'));
      first = await storedTokens(page);
      assert.ok(first.password && first.refresh, 'the login\'s access and refresh tokens are kept');
      const c = claimsOf(first.password);
      assert.equal(c.exp - c.iat, TTL, `a ${TTL} s password-level token`);
      assert.ok(c.sid, 'the token carries sid');
      assert.equal(await text(page, '#claim-sid'), c.sid, 'sid shown in the claims');
      await expectText(page, '#token-refresh', /^held: renews the password token in 0:0\d$/);
      await expectText(page, '#session-list', /this device/);
      assert.equal(await page.locator('#session-list .session-item').count(), 1);
      assert.equal(await page.getAttribute('#session-list .session-item', 'data-session-id'), c.sid,
        'the session listed is the token\'s sid');
    });

    await step('copied-tab-does-not-reuse-the-refresh-token', async () => {
      // A tab opened by this one starts with a copy of its sessionStorage:
      // the same refresh token. Whichever of the two renews second must not
      // present it again (that would end the session for both): it logs
      // itself out, and the other one goes on.
      const [copy] = await Promise.all([
        page.context().waitForEvent('page'),
        page.evaluate(() => { window.open(window.location.href); }),
      ]);
      collectErrors(copy, copyErrors);
      await copy.waitForLoadState();
      await idle(copy);
      await expectText(copy, '#auth-level', 'password');
      assert.equal(await text(copy, '#claim-sid'), claimsOf(first.password).sid, 'the copy shows the same session');
      const levels = async () => [await text(page, '#auth-level'), await text(copy, '#auth-level')];
      const [opener, opened] = await eventually(levels, (v) => v.includes('none'),
        'one of the two tabs should give up the session', 15_000);
      const [gone, kept] = opener === 'none' ? [page, copy] : [copy, page];
      assert.deepEqual([opener, opened].sort(), ['none', 'password'], 'the other tab is still logged in');
      const m = await message(gone);
      assert.match(m.text, /This tab is a copy of another one that has since renewed the session/, `message: ${m.text}`);
      assert.deepEqual(await gone.evaluate(() => Object.keys(sessionStorage)), [], 'it forgot its tokens');
      assert.equal(await text(gone, '#session-status'),
        'This tab left the session to the tab it was copied from: log in again here.');
      await gone.bringToFront(); // a tab in the background draws no frames to screenshot
      await shot('copied-tab-logged-out', undefined, gone);
      // The other tab goes on (it renews again in the next step), and the session lives.
      await expectText(kept, '#auth-level', 'password');
      const sessions = await ask(server, 'GET', '/auth/sessions', { token: (await storedTokens(kept)).password });
      assert.equal(sessions.status, 200, sessions.raw);
      assert.equal(sessions.json.length, 1, sessions.raw);
      live = kept;
      await live.bringToFront();
    });

    await step('still-logged-in-past-expiry', async () => {
      const c0 = claimsOf(first.password);
      const iatShown = await text(live, '#claim-iat');
      await sleepUntil(c0.exp);
      await expectText(live, '#auth-level', 'password');
      const now = await storedTokens(live);
      const c = claimsOf(now.password);
      assert.equal(c.sid, c0.sid, 'the same session');
      assert.ok(c.iat > c0.iat, `a newer token (iat ${c.iat} > ${c0.iat})`);
      assert.ok(c.exp > Date.now() / 1000, 'and a live one');
      assert.equal(c.authLevel, 'password');
      assert.deepEqual(c.amr, ['pwd']);
      assert.equal(c.auth_time, c0.auth_time, 'auth_time stays the login\'s');
      assert.notEqual(now.refresh, first.refresh, 'the refresh token was rotated');
      assert.equal(await text(live, '#claim-sid'), c0.sid);
      assert.notEqual(await text(live, '#claim-iat'), iatShown, 'the claims show the newer iat');
      assert.match(await text(live, '#token-refresh'), /last renewed \d/);
      assert.match(await text(live, '#session-status'), /Logged in with a password only/);
      await clickAndWait(live, '#call-basic');
      const r = await result(live);
      assert.equal(r.status, '200', `GET /protected/basic: ${r.body}`);
      assert.equal(r.json?.authLevel, 'password');
      assert.equal((await message(live)).kind, 'success');
    }, { show: '#result', page: live });

    await step('restored-after-expiry-while-away', async () => {
      // Leave while no renewal is about to start (none is cut off half-way).
      await expectText(live, '#token-refresh', /renews the password token in 0:0[2-9]/, 10_000);
      latest = await storedTokens(live);
      await live.goto('about:blank');
      await sleepUntil(claimsOf(latest.password).exp);
      await live.goto(`${server.baseUrl}/`);
      await idle(live);
      await expectText(live, '#auth-level', 'password');
      const m = await message(live);
      assert.match(m.text, /Session restored from this tab: the access token was renewed/, `message: ${m.text}`);
      const now = await storedTokens(live);
      const c = claimsOf(now.password);
      assert.equal(c.sid, claimsOf(first.password).sid, 'the same session');
      assert.ok(c.iat > claimsOf(latest.password).iat, 'a newer token');
      assert.notEqual(now.refresh, latest.refresh, 'the refresh token was rotated');
      await expectText(live, '#session-list', /this device/);
    }, { page: live });

    await step('reused-refresh-token-ends-the-session', async () => {
      // The login's refresh token, rotated long ago, presented again: taken
      // for a stolen copy, it ends the session. The page notices at its next
      // renewal, without a click.
      const held = await storedTokens(live);
      const reuse = await ask(server, 'POST', '/auth/refresh', { body: { refreshToken: first.refresh } });
      assert.equal(reuse.status, 401, reuse.raw);
      assert.equal(reuse.json?.code, 'invalid_refresh_token', reuse.raw);
      await expectText(live, '#auth-level', 'none', 15_000);
      await assertToldSessionEnded(live);
      const old = await ask(server, 'GET', '/protected/basic', { token: held.password });
      assert.equal(old.status, 401, `the page's last access token: ${old.raw}`);
      assert.equal(old.json?.code, 'invalid_token', old.raw);
    }, { page: live });

    await step('no-script-errors', async () => {
      assert.deepEqual(browser.pageErrors, [], 'no script errors or CSP violations on the page');
      assert.deepEqual(copyErrors, [], 'none in the copied tab');
    }, { screenshot: false });
  } finally {
    await browser?.close();
    await server.stop();
  }
});

const FIREFOX_WINDOWS = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0';
const SAFARI_IPHONE = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 '
  + '(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1';

const sessionItems = (page) => page.locator('#session-list .session-item');
const sessionItem = (page, device) => page.locator('#session-list .session-item', {
  has: page.locator('.session-device', { hasText: device }),
});

test('your sessions: one device ends another\'s, then logs out everywhere else', async (t) => {
  const server = await startServer();
  let browser;
  const devices = [];
  try {
    browser = await launchBrowser();
    const { page } = browser; // device A: this browser's own User-Agent
    const b = await browser.newDevice({ userAgent: FIREFOX_WINDOWS });
    const c = await browser.newDevice({ userAgent: SAFARI_IPHONE, viewport: PHONE });
    devices.push(b, c);
    const { step, shot } = scenario(t, 'sessions-devices', { page, server, pageErrors: browser.pageErrors });
    const username = uniqueUsername('devices');
    let bTokens;

    await step('device-a-signed-up', async () => {
      await page.goto(`${server.baseUrl}/`);
      await signUp(page, username);
      await expectText(page, '#session-list', /this device/);
      assert.equal(await sessionItems(page).count(), 1);
      const item = sessionItems(page).first();
      assert.match(await item.locator('.session-device').textContent(), /^Headless Chrome \d+ on Linux$/,
        'the User-Agent, shortened');
      assert.equal(await item.getAttribute('data-current'), 'true');
      assert.match(await item.textContent(), /IP address(127\.0\.0\.1|::1)/);
      assert.equal(await item.locator('.end-session-button').count(), 0, 'this session is ended with "Log out"');
      assert.ok(await page.locator('#end-other-sessions').isDisabled(), 'no other session to end');
    }, { show: '#sessions' });

    await step('device-b-logged-in', async () => {
      await b.page.goto(`${server.baseUrl}/`);
      await logIn(b.page, username);
      await expectText(b.page, '#session-list', /Firefox 128 on Windows/);
      assert.equal(await sessionItems(b.page).count(), 2);
      assert.equal(await sessionItem(b.page, 'Firefox 128 on Windows').getAttribute('data-current'), 'true',
        'device B sees its own session as "this device"');
      bTokens = await storedTokens(b.page);
    }, { show: '#sessions', page: b.page });

    await step('device-a-lists-two-sessions', async () => {
      await clickAndWait(page, '#refresh-sessions');
      assert.equal(await sessionItems(page).count(), 2);
      // Newest first: B's login, then A's.
      assert.equal(await sessionItems(page).first().locator('.session-device').textContent(), 'Firefox 128 on Windows');
      const other = sessionItem(page, 'Firefox 128 on Windows');
      assert.equal(await other.getAttribute('data-current'), 'false');
      assert.equal(await other.getAttribute('data-session-id'), claimsOf(bTokens.password).sid);
      assert.equal(await other.locator('.session-device').getAttribute('title'), FIREFOX_WINDOWS,
        'the whole User-Agent on hover');
      assert.match(await other.textContent(), /Signed in.*Last seen.*IP address/);
      assert.ok(!(await other.locator('.end-session-button').isDisabled()), '"End" offered for the other session');
      assert.match(await sessionItem(page, 'Headless Chrome').textContent(), /this device/);
      assert.ok(!(await page.locator('#end-other-sessions').isDisabled()));
    }, { show: '#sessions' });

    await step('sessions-phone-width', async () => {
      await phoneShot(page, shot, 'sessions-phone-width-375', ['#sessions']);
    }, { screenshot: false });

    await step('device-a-ends-device-b', async () => {
      // No passkey and a password login just now: recent enough, no re-verification.
      await clickAndWait(page, `#session-list .end-session-button[data-session-id="${claimsOf(bTokens.password).sid}"]`);
      const m = await message(page);
      assert.equal(m.kind, 'success', `message: ${m.text}`);
      assert.equal(m.text, 'Session ended: Firefox 128 on Windows is logged out.');
      assert.ok(await page.locator('#reauth').isHidden(), 'no re-verification was needed');
      assert.equal(await sessionItems(page).count(), 1, 'the list is reloaded');
      assert.ok(await page.locator('#end-other-sessions').isDisabled());
      const old = await ask(server, 'GET', '/auth/me', { token: bTokens.password });
      assert.equal(old.status, 401, `device B's token: ${old.raw}`);
      assert.equal(old.json?.code, 'invalid_token');
      await expectText(page, '#auth-level', 'password');
    }, { show: '#sessions' });

    await step('device-b-told-it-is-logged-out', async () => {
      // B's page still shows it logged in; its next action finds out.
      await expectText(b.page, '#auth-level', 'password');
      await clickAndWait(b.page, '#call-basic');
      await assertToldSessionEnded(b.page);
      const r = await result(b.page);
      assert.equal(r.status, '401', `the refused call is shown: ${r.body}`);
      assert.equal(r.json?.code, 'invalid_token');
      assert.equal(await b.page.evaluate(() => document.activeElement.id), 'login-username');
    }, { page: b.page });

    await step('three-devices-logged-in', async () => {
      await logIn(b.page, username);
      await c.page.goto(`${server.baseUrl}/`);
      await logIn(c.page, username);
      await expectText(c.page, '#session-list', /Safari 17 on iPhone/);
      await clickAndWait(page, '#refresh-sessions');
      assert.equal(await sessionItems(page).count(), 3);
      const listed = await page.locator('#session-list .session-device').allTextContents();
      assert.deepEqual(listed.slice(0, 2), ['Safari 17 on iPhone', 'Firefox 128 on Windows'], 'newest first');
      assert.match(listed[2], /^Headless Chrome/);
      assert.equal(await sessionItems(page).last().getAttribute('data-current'), 'true');
    }, { show: '#sessions' });

    await step('device-c-sessions-phone', async () => {
      await c.page.locator('#sessions').evaluate((el) => el.scrollIntoView({ block: 'start' }));
    }, { page: c.page });

    await step('device-a-adds-a-passkey', async () => {
      // From now on the account has a passkey: ending sessions needs it.
      await browser.addAuthenticator();
      await registerPasskey(page, 'Device A key');
      await expectText(page, '#auth-level', 'password');
    });

    await step('device-a-logs-out-everywhere-else', async () => {
      // At password level: 403 passkey_required, the page asks for the
      // passkey (the virtual authenticator answers), then carries on.
      const refused = page.waitForResponse((r) => r.url().endsWith('/auth/sessions') && r.request().method() === 'DELETE');
      await page.click('#end-other-sessions');
      const first403 = await refused;
      assert.equal(first403.status(), 403);
      assert.equal((await first403.json()).code, 'passkey_required');
      await idle(page);
      const m = await message(page);
      assert.equal(m.kind, 'success', `message: ${m.text}`);
      assert.match(m.text, /Every other session was ended: only this device is still logged in/);
      assert.ok(await page.locator('#reauth').isHidden(), 'the re-verification panel is gone');
      await expectText(page, '#auth-level', 'full');
      await expectText(page, '#claim-amr', 'pwd, hwk');
      assert.equal(await sessionItems(page).count(), 1);
      assert.equal(await sessionItems(page).first().getAttribute('data-current'), 'true');
      await clickAndWait(page, '#call-basic');
      assert.equal((await result(page)).status, '200', 'device A is still logged in');
    }, { show: '#sessions' });

    await step('devices-b-and-c-logged-out', async () => {
      // C reloads (the session is restored from the tab, and refused); B reloads its list.
      await c.page.reload();
      await idle(c.page);
      await assertToldSessionEnded(c.page);
      await clickAndWait(b.page, '#refresh-sessions');
      await assertToldSessionEnded(b.page);
    }, { page: c.page });

    await step('logging-in-again-replaces-the-session', async () => {
      // "Switch account or sign up" while logged in: the new login's session
      // takes the place of the old one, which the page ends.
      const before = await storedTokens(page);
      await page.click('#account-forms-summary');
      await logIn(page, username);
      const after = await storedTokens(page);
      assert.notEqual(claimsOf(after.password).sid, claimsOf(before.password).sid, 'a new session');
      assert.equal(await sessionItems(page).count(), 1, 'only the new session is listed');
      assert.equal(await sessionItems(page).first().getAttribute('data-session-id'), claimsOf(after.password).sid);
      const old = await ask(server, 'POST', '/auth/refresh', { body: { refreshToken: before.refresh } });
      assert.equal(old.status, 401, `the replaced session's refresh token: ${old.raw}`);
      assert.equal(old.json?.code, 'invalid_refresh_token');
    }, { show: '#sessions' });

    await step('no-script-errors', async () => {
      assert.deepEqual(browser.pageErrors, [], 'no script errors or CSP violations on device A');
      assert.deepEqual(b.pageErrors, [], 'none on device B');
      assert.deepEqual(c.pageErrors, [], 'none on device C');
    }, { screenshot: false });
  } finally {
    for (const device of devices) await device.close().catch(() => {});
    await browser?.close();
    await server.stop();
  }
});
