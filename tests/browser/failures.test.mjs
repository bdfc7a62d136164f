// Failures a person meets on the demo page:
// - a wrong password shows the server's own message;
// - a passkey prompt that cannot finish (authenticator gone, or user
//   verification failing) ends with a clear message, through the page's
//   Cancel button when the browser would otherwise wait for the timeout, and
//   leaves every control usable; so does a step-up prompt asked for by a
//   registration (passkey_required), first the prompt then the panel;
// - a full-level token that expires falls back to password level and asks
//   for the passkey again.
// Screenshots: screenshots/failures-*/.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  clickAndWait, expectText, idle, isDisabled, launchBrowser, message, PASSWORD, registerPasskey, result,
  scenario, signUp, startServer, text, uniqueUsername, verifyPasskey,
} from './harness.mjs';

// Every control a logged-in person at password level may use is enabled.
async function assertUsableAtPasswordLevel(page) {
  for (const id of ['#signup-submit', '#login-submit', '#logout', '#passkey-nickname', '#register-passkey',
    '#verify-passkey', '#refresh-passkeys', '#call-basic', '#call-full']) {
    assert.ok(!(await isDisabled(page, id)), `${id} should be enabled again`);
  }
  assert.ok(await page.locator('#cancel-passkey').isHidden(), 'the Cancel button is gone once the prompt is over');
  assert.ok(await page.locator('#reauth').isHidden(), 'no re-verification panel left open');
  assert.equal(await page.getAttribute('body', 'aria-busy'), 'false', 'page not busy');
}

// Waits for the passkey prompt to be open: the page's Cancel button is shown
// and has keyboard focus.
async function waitForPrompt(page) {
  await page.locator('#cancel-passkey').waitFor({ state: 'visible', timeout: 10_000 });
  assert.ok(!(await isDisabled(page, '#cancel-passkey')), 'Cancel is enabled while the prompt is open');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'cancel-passkey',
    'Cancel has keyboard focus while the prompt is open');
  assert.ok(await isDisabled(page, '#call-basic'), 'other controls wait while the prompt is open');
  assert.equal(await page.getAttribute('body', 'aria-busy'), 'true');
}

test('wrong password, cancelled passkey prompts, page still usable', async (t) => {
  const server = await startServer();
  let browser;
  try {
    browser = await launchBrowser();
    const { page, cdp } = browser;
    let authenticatorId = await browser.addAuthenticator();
    const { step } = scenario(t, 'failures-prompts', { page, server, pageErrors: browser.pageErrors });
    const username = uniqueUsername('fail');

    await step('signed-up-then-logged-out', async () => {
      await page.goto(`${server.baseUrl}/`);
      await signUp(page, username);
      await page.click('#logout');
      await expectText(page, '#auth-level', 'none');
    });

    await step('wrong-password', async () => {
      // What the server says to a wrong password, asked directly.
      const res = await fetch(`${server.baseUrl}/auth/login`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ username, password: 'not the password' }),
      });
      const problem = await res.json();
      assert.equal(res.status, 401);
      assert.ok(problem.detail, 'the 401 has a detail');

      await page.fill('#login-username', username);
      await page.fill('#login-password', 'not the password');
      await clickAndWait(page, '#login-submit');
      const m = await message(page);
      assert.equal(m.kind, 'error', `message: ${m.text}`);
      assert.ok(m.text.includes(problem.detail), `message shows the server's detail "${problem.detail}": ${m.text}`);
      assert.equal(m.status, '401');
      assert.equal(m.code, 'invalid_credentials');
      await expectText(page, '#auth-level', 'none');
      assert.equal(await text(page, '#claim-auth-level'), '—', 'no token after a wrong password');
      assert.equal(await page.inputValue('#login-username'), username, 'the username is kept for a retry');
    });

    await step('logged-in', async () => {
      await page.fill('#login-password', PASSWORD);
      await clickAndWait(page, '#login-submit');
      await expectText(page, '#auth-level', 'password');
      await registerPasskey(page, 'Key A');
    });

    await step('user-verification-fails', async () => {
      await cdp.send('WebAuthn.setUserVerified', { authenticatorId, isUserVerified: false });
      const t0 = Date.now();
      await page.click('#verify-passkey');
      // Chromium's virtual authenticator refuses at once (NotAllowedError).
      // Should a version keep waiting like a real prompt instead, the page's
      // Cancel button ends the wait.
      const settled = await idle(page, 5_000).then(() => true, () => false);
      if (!settled) {
        await page.click('#cancel-passkey');
        await idle(page);
      }
      const m = await message(page);
      assert.ok(Date.now() - t0 < 10_000, 'the failure does not wait for the WebAuthn timeout');
      assert.equal(m.kind, settled ? 'error' : 'warning', `message: ${m.text}`);
      assert.match(m.text, settled
        ? /passkey prompt ended without a passkey .*could not verify you/
        : /Passkey prompt was cancelled/);
      await expectText(page, '#auth-level', 'password');
      await assertUsableAtPasswordLevel(page);
      await cdp.send('WebAuthn.setUserVerified', { authenticatorId, isUserVerified: true });
    });

    // The virtual authenticator's credential, to put back on a new one later.
    const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });

    await step('prompt-open-without-authenticator', async () => {
      assert.equal(credentials.length, 1, 'the authenticator holds the registered passkey');
      await browser.removeAuthenticator(authenticatorId);
      authenticatorId = null;
      await page.click('#verify-passkey');
      await waitForPrompt(page);
      await expectText(page, '#ceremony-status', /Waiting for your authenticator/);
    });

    await step('prompt-cancelled-with-keyboard', async () => {
      // Cancel has focus: Enter presses it.
      await page.keyboard.press('Enter');
      await idle(page);
      const m = await message(page);
      assert.equal(m.kind, 'warning', `message: ${m.text}`);
      assert.match(m.text, /Passkey prompt was cancelled/);
      assert.match(m.text, /access level is unchanged/);
      await expectText(page, '#auth-level', 'password');
      await assertUsableAtPasswordLevel(page);
      assert.equal(await page.evaluate(() => document.activeElement.id), 'verify-passkey',
        'focus goes back to the button that opened the prompt');
    });

    await step('step-up-prompt-cancelled-with-escape', async () => {
      // A second passkey needs the first one (passkey_required): the page asks
      // for it in the re-verification panel and opens the prompt at once.
      await page.fill('#passkey-nickname', 'Never created');
      await page.click('#register-passkey');
      await waitForPrompt(page);
      assert.ok(await page.locator('#reauth').isVisible(), 'the re-verification panel is open');
      await expectText(page, '#reauth-reason', /needs a recent verification with your passkey/);
      await expectText(page, '#ceremony-status', /confirm it is you/);
      await page.keyboard.press('Escape'); // ends the prompt; the panel stays for another way
      await expectText(page, '#message', /Passkey prompt was cancelled/);
      assert.ok(await page.locator('#reauth').isVisible(), 'the panel stays after the prompt ends');
      assert.ok(await page.locator('#cancel-passkey').isHidden(), 'the prompt is over');
      assert.equal(await page.evaluate(() => document.activeElement.id), 'reauth-passkey-button',
        'focus on "Try the passkey again"');
      await expectText(page, '#reauth-passkey-button', 'Try the passkey again');
    });

    await step('step-up-panel-cancelled-with-escape', async () => {
      await page.keyboard.press('Escape'); // now ends the panel, and the registration with it
      await idle(page);
      const m = await message(page);
      assert.equal(m.kind, 'warning', `message: ${m.text}`);
      assert.match(m.text, /Passkey registration cancelled: nothing was changed/);
      assert.equal(await page.locator('#passkey-list li.passkey-item').count(), 1, 'still one passkey');
      await expectText(page, '#auth-level', 'password');
      await assertUsableAtPasswordLevel(page);
      assert.equal(await page.evaluate(() => document.activeElement.id), 'register-passkey',
        'focus goes back to the button that was clicked');
    });

    await step('page-still-usable', async () => {
      await clickAndWait(page, '#call-basic');
      const r = await result(page);
      assert.equal(r.status, '200', `GET /protected/basic: ${r.body}`);
      assert.equal(r.json?.authLevel, 'password');
      assert.equal((await message(page)).kind, 'success');
    }, { show: '#result' });

    await step('verified-once-authenticator-is-back', async () => {
      authenticatorId = await browser.addAuthenticator();
      await cdp.send('WebAuthn.addCredential', { authenticatorId, credential: credentials[0] });
      await verifyPasskey(page);
      await clickAndWait(page, '#call-full');
      assert.equal((await result(page)).status, '200');
    }, { show: '#result' });

    await step('registration-prompt-cancelled-with-escape', async () => {
      // Freshly verified: registration goes straight to the browser's prompt,
      // which waits with no authenticator present.
      await browser.removeAuthenticator(authenticatorId);
      authenticatorId = null;
      await page.fill('#passkey-nickname', 'Never created');
      await page.click('#register-passkey');
      await waitForPrompt(page);
      await expectText(page, '#ceremony-status', /create a passkey/);
      assert.ok(await page.locator('#reauth').isHidden(), 'no re-verification needed right after verifying');
      await page.keyboard.press('Escape');
      await idle(page);
      const m = await message(page);
      assert.equal(m.kind, 'warning', `message: ${m.text}`);
      assert.match(m.text, /Passkey prompt was cancelled: no passkey was registered/);
      assert.equal(await page.locator('#passkey-list li.passkey-item').count(), 1, 'still one passkey');
      await expectText(page, '#auth-level', 'full');
      await assertUsableAtPasswordLevel(page);
    });

    await step('no-script-errors', async () => {
      assert.deepEqual(browser.pageErrors, [], 'no script errors or CSP violations on the page');
    }, { screenshot: false });
  } finally {
    await browser?.close();
    await server.stop();
  }
});

test('an expired full-level token falls back to password level and asks for the passkey', async (t) => {
  const FULL_TTL = 10; // the shortest the server accepts
  const server = await startServer({ JWT_FULL_TTL_SECS: String(FULL_TTL) });
  let browser;
  try {
    browser = await launchBrowser();
    const { page } = browser;
    await browser.addAuthenticator();
    const { step } = scenario(t, 'failures-full-token-expiry', { page, server, pageErrors: browser.pageErrors });

    await step('stepped-up', async () => {
      await page.goto(`${server.baseUrl}/`);
      await signUp(page, uniqueUsername('expiry'));
      await registerPasskey(page, 'Expiry key');
      await verifyPasskey(page);
      const left = await text(page, '#token-full-expiry');
      assert.match(left, /^0:(0\d|10) /, `full-level token lives ${FULL_TTL} s: ${left}`);
      assert.match(await text(page, '#token-password-expiry'), /^\d+:\d\d/);
    });

    await step('fell-back-to-password-level', async () => {
      await expectText(page, '#auth-level', 'password', (FULL_TTL + 5) * 1000);
      const m = await message(page);
      assert.equal(m.kind, 'warning', `message: ${m.text}`);
      assert.match(m.text, /full-level token expired/);
      assert.match(m.text, /Verify with your passkey again/);
      assert.equal(await text(page, '#claim-auth-level'), 'password', 'claims of the password-level token');
      assert.equal(await text(page, '#claim-amr'), 'pwd');
      assert.match(await text(page, '#token-expiry'), /^\d+:\d\d/, 'the password-level token is live');
      assert.equal(await text(page, '#token-full-expiry'), 'expired: verify with your passkey again');
      assert.match(await text(page, '#session-status'), /verify with your passkey again/);
      assert.ok(await page.locator('#stepup-hint').isVisible(), 'the step-up hint is shown');
      assert.match(await text(page, '#stepup-hint'), /full-level token expired/);
      assert.ok(await isDisabled(page, '#passkey-list .rename-button'), 'rename needs full level again');
      assert.ok(!(await isDisabled(page, '#verify-passkey')), 'verify is offered');
      const stored = await page.evaluate(() => Object.keys(sessionStorage).sort());
      assert.deepEqual(stored, ['passkeyDemo.passwordToken', 'passkeyDemo.refreshToken'],
        'the expired full-level token is forgotten');
    });

    await step('full-route-refused-again', async () => {
      await clickAndWait(page, '#call-full');
      const r = await result(page);
      assert.equal(r.status, '403', r.body);
      assert.equal(r.json?.code, 'passkey_required');
      const m = await message(page);
      assert.ok(m.text.includes(r.json.detail), `message shows the server's detail: ${m.text}`);
      assert.match(m.text, /Verify with a passkey/);
    }, { show: '#result' });

    await step('verified-again', async () => {
      await verifyPasskey(page);
      assert.ok(await page.locator('#stepup-hint').isHidden(), 'no step-up hint at full level');
      assert.match(await text(page, '#token-full-expiry'), /^0:(0\d|10) /);
      await clickAndWait(page, '#call-full');
      const r = await result(page);
      assert.equal(r.status, '200', r.body);
      assert.equal(r.json?.authLevel, 'full');
    }, { show: '#result' });

    await step('no-script-errors', async () => {
      assert.deepEqual(browser.pageErrors, [], 'no script errors or CSP violations on the page');
    }, { screenshot: false });
  } finally {
    await browser?.close();
    await server.stop();
  }
});
