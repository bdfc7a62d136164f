// "Recent" changes (API.md, "Step-up and freshness") on the demo page: the
// page meets the server's 403 (passkey_required, reauthentication_required),
// asks in its re-verification panel for what the WWW-Authenticate challenge
// names (acr_values: the passkey or a recovery code for "full", the password
// for "password"), saying why, and then finishes what the person clicked
// without a second click. Screenshots: screenshots/step-up-*/.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  clickAndWait, expectText, gate, idle, launchBrowser, logIn, logOut, message,
  newAuthenticatorForNextRegistration, PASSWORD, phoneShot, registerPasskey, scenario, signUp, sleep,
  startServer, text, uniqueUsername, verifyPasskey,
} from './harness.mjs';

const passkeyItem = (page, nickname) => page.locator('#passkey-list li.passkey-item', {
  has: page.locator('.passkey-nickname', { hasText: nickname }),
});

// Clicks "Register a passkey" for a second passkey and checks that the page
// first asks for the passkey (the re-verification panel, its prompt opening
// at once) with `code` as the reason, then registers without another click.
// The passkey request is held while the panel is looked at.
async function registerAfterStepUp(browser, shot, nickname, code, reason, maxAge) {
  const { page } = browser;
  const created = newAuthenticatorForNextRegistration(browser);
  const held = await gate(page, '**/passkeys/authenticate/options');
  const refused = page.waitForResponse((r) => r.url().endsWith('/passkeys/register/options'));
  await page.fill('#passkey-nickname', nickname);
  await page.click('#register-passkey');
  await held.reached;
  try {
    // The challenge the page read (API.md, "Conventions").
    const answer = await refused;
    assert.equal(answer.status(), 403);
    const description = code === 'passkey_required' ? 'passkey verification required' : 'a recent verification is required';
    assert.equal(answer.headers()['www-authenticate'], `Bearer error="insufficient_user_authentication", `
      + `error_description="${description}", acr_values="full", max_age=${maxAge}`);
    assert.ok(await page.locator('#reauth').isVisible(), 'the re-verification panel is open');
    await expectText(page, '#reauth-heading', 'Confirm it is you with your passkey');
    await expectText(page, '#reauth-reason', reason);
    assert.match(await text(page, '#reauth-reason'), /continues by itself/, 'says what happens next');
    assert.ok(await page.locator('#reauth-code-form').isVisible(), 'a recovery code is offered too');
    const m = await message(page);
    assert.equal(m.code, code, `message: ${m.text}`);
    assert.equal(m.status, '403');
    assert.match(m.text, /Passkey registration: this change needs a recent verification/);
    await shot(`asked-for-passkey-${code}`, '#reauth');
  } finally {
    held.release();
  }
  await idle(page);
  await created;
  const m = await message(page);
  assert.equal(m.kind, 'success', `registration message: ${m.text}`);
  assert.match(m.text, new RegExp(`Passkey "${nickname}" registered\\.$`), 'a further passkey: no codes');
  assert.ok(await page.locator('#reauth').isHidden(), 'the panel is gone');
  assert.ok(await page.locator('#codes-panel').isHidden(), 'no recovery codes for a further passkey');
  await expectText(page, '#auth-level', 'full');
  await expectText(page, '#claim-amr', 'pwd, hwk');
  await expectText(page, '#me-passkey-count', '2');
  assert.equal(await passkeyItem(page, nickname).count(), 1, `"${nickname}" listed`);
}

test('passkey_required: a password login verifies with the passkey (or a code) first', async (t) => {
  const server = await startServer();
  let browser;
  try {
    browser = await launchBrowser();
    const { page } = browser;
    await browser.addAuthenticator();
    const { step, shot } = scenario(t, 'step-up-passkey-required', { page, server, pageErrors: browser.pageErrors });
    const username = uniqueUsername('stepup');
    let codes = [];

    await step('first-passkey-right-after-login', async () => {
      await page.goto(`${server.baseUrl}/`);
      await signUp(page, username);
      codes = await registerPasskey(page, 'Key A');
      assert.equal(codes.length, 10, 'the first passkey came with recovery codes');
      await expectText(page, '#auth-level', 'password');
    });

    await step('second-passkey-asks-for-the-passkey-first', async () => {
      await registerAfterStepUp(browser, shot, 'Key B', 'passkey_required',
        /needs a recent verification with your passkey: your account has one/, 300);
    });

    await step('deletion-asks-again-no-authenticator', async () => {
      await logOut(page);
      await logIn(page, username);
      await browser.removeAllAuthenticators(); // no passkey at hand
      await passkeyItem(page, 'Key A').locator('.delete-button').click();
      await page.locator('#cancel-passkey').waitFor({ state: 'visible' });
      assert.ok(await page.locator('#reauth').isVisible(), 'the re-verification panel is open');
      assert.equal(await page.evaluate(() => document.activeElement.id), 'cancel-passkey',
        'the prompt\'s Cancel button, inside the panel, has focus');
      assert.equal(await page.evaluate(() => document.getElementById('cancel-passkey').closest('#reauth') !== null), true);
      await expectText(page, '#reauth-reason', /continues by itself/);
    }, { show: '#reauth' });

    await step('prompt-ended-code-used', async () => {
      await page.keyboard.press('Escape');
      await expectText(page, '#message', /Passkey prompt was cancelled/);
      assert.ok(await page.locator('#reauth').isVisible(), 'the panel stays');
      await page.fill('#reauth-code', 'not-a-code');
      await page.press('#reauth-code', 'Enter');
      await expectText(page, '#message', /Verification failed: .*invalid_recovery_code/);
      assert.ok(await page.locator('#reauth').isVisible(), 'a wrong code leaves the panel open');
      await shot('wrong-code', '#reauth');
      await page.fill('#reauth-code', codes[0].toUpperCase());
      await page.press('#reauth-code', 'Enter');
      await idle(page);
      const m = await message(page);
      assert.equal(m.kind, 'success', `deletion message: ${m.text}`);
      assert.match(m.text, /Passkey "Key A" deleted/);
      assert.ok(await page.locator('#reauth').isHidden(), 'the panel is gone');
      assert.equal(await passkeyItem(page, 'Key A').count(), 0, 'Key A is gone');
      assert.equal(await passkeyItem(page, 'Key B').count(), 1, 'Key B is kept');
      await expectText(page, '#auth-level', 'full');
      await expectText(page, '#claim-amr', 'pwd, otp');
      await expectText(page, '#me-recovery-remaining', '9 left');
    });

    await step('no-script-errors', async () => {
      assert.deepEqual(browser.pageErrors, [], 'no script errors or CSP violations on the page');
    }, { screenshot: false });
  } finally {
    await browser?.close();
    await server.stop();
  }
});

test('reauthentication_required: after STEP_UP_MAX_AGE_SECS the page asks again, then carries on', async (t) => {
  const MAX_AGE = 8;
  const server = await startServer({ STEP_UP_MAX_AGE_SECS: String(MAX_AGE) });
  let browser;
  try {
    browser = await launchBrowser();
    const { page } = browser;
    await browser.addAuthenticator();
    const { step, shot } = scenario(t, 'step-up-reauthentication', { page, server, pageErrors: browser.pageErrors });
    const withPasskey = uniqueUsername('stale');
    const withoutPasskey = uniqueUsername('plain');
    const newPassword = 'a brand new passphrase';

    await step('verified-with-passkey', async () => {
      await page.goto(`${server.baseUrl}/`);
      await signUp(page, withPasskey);
      await registerPasskey(page, 'Key A');
      await verifyPasskey(page);
    });

    await step('verification-grown-old', async () => {
      await sleep((MAX_AGE + 1.5) * 1000);
      await expectText(page, '#auth-level', 'full'); // the token lives; its verification is old
    });

    await step('another-passkey-asks-for-the-passkey-again', async () => {
      await registerAfterStepUp(browser, shot, 'Key B', 'reauthentication_required',
        new RegExp(`Your last verification was \\d+ seconds ago; changes like this one accept ${MAX_AGE} seconds at most`),
        MAX_AGE);
      assert.match(await text(page, '#claim-auth-time'), new RegExp(`\\(0:0\\d ago\\), within the ${MAX_AGE} s window$`), 'auth_time moved on');
    });

    await step('signed-up-without-passkey', async () => {
      await logOut(page);
      await signUp(page, withoutPasskey);
      await expectText(page, '#me-passkey-count', '0');
    });

    await step('password-login-grown-old', async () => {
      await sleep((MAX_AGE + 1.5) * 1000);
      await expectText(page, '#claim-auth-time', new RegExp(`, older than the ${MAX_AGE} s window$`));
    });

    await step('password-change-asks-for-the-password', async () => {
      await page.fill('#current-password', PASSWORD);
      await page.fill('#new-password', newPassword);
      const refused = page.waitForResponse((r) => r.url().endsWith('/auth/password'));
      await page.click('#change-password');
      await page.locator('#reauth-password-form').waitFor({ state: 'visible' });
      const answer = await refused;
      assert.equal(answer.status(), 403);
      assert.equal(answer.headers()['www-authenticate'], 'Bearer error="insufficient_user_authentication", '
        + `error_description="a recent verification is required", acr_values="password", max_age=${MAX_AGE}`);
      assert.ok(await page.locator('#reauth-passkey').isHidden(), 'no passkey asked for: the account has none');
      await expectText(page, '#reauth-heading', 'Confirm it is you with your password');
      await expectText(page, '#reauth-reason',
        new RegExp(`Your password login was \\d+ seconds ago; changes like this one accept ${MAX_AGE} seconds at most`));
      await expectText(page, '#reauth-username', withoutPasskey);
      const m = await message(page);
      assert.equal(m.code, 'reauthentication_required', `message: ${m.text}`);
      assert.equal(await page.evaluate(() => document.activeElement.id), 'reauth-password',
        'focus in the password field');
    }, { show: '#reauth' });

    await step('password-prompt-phone-width', async () => {
      await phoneShot(page, shot, 'password-prompt-phone-width-375', ['#reauth']);
      await page.focus('#reauth-password');
    }, { screenshot: false });

    await step('wrong-password-keeps-asking', async () => {
      await page.keyboard.type('not the password');
      await page.keyboard.press('Enter');
      await expectText(page, '#message', /Verification failed: .*invalid_credentials/);
      assert.ok(await page.locator('#reauth').isVisible(), 'the panel stays open');
      assert.equal(await page.getAttribute('body', 'aria-busy'), 'true', 'the change still waits');
    }, { show: '#reauth' });

    await step('password-changed', async () => {
      await page.fill('#reauth-password', PASSWORD);
      await page.press('#reauth-password', 'Enter');
      await idle(page);
      const m = await message(page);
      assert.equal(m.kind, 'success', `message: ${m.text}`);
      assert.match(m.text, /Password changed/);
      assert.ok(await page.locator('#reauth').isHidden(), 'the panel is gone');
      assert.equal(await page.inputValue('#new-password'), '', 'the form is cleared');
      await expectText(page, '#auth-level', 'password');
      // The password asked again was a new login, a new session; the page
      // ended the one it replaced, and the change ended any other.
      assert.equal(await page.locator('#session-list .session-item').count(), 1, 'one session left');
      assert.equal(await page.getAttribute('#session-list .session-item', 'data-current'), 'true');
    });

    await step('new-password-works-old-fails', async () => {
      await logOut(page);
      await page.fill('#login-username', withoutPasskey);
      await page.fill('#login-password', PASSWORD);
      await clickAndWait(page, '#login-submit');
      const old = await message(page);
      assert.equal(old.kind, 'error', `old password: ${old.text}`);
      assert.equal(old.code, 'invalid_credentials');
      await expectText(page, '#auth-level', 'none');
      await logIn(page, withoutPasskey, newPassword);
    });

    await step('no-script-errors', async () => {
      assert.deepEqual(browser.pageErrors, [], 'no script errors or CSP violations on the page');
    }, { screenshot: false });
  } finally {
    await browser?.close();
    await server.stop();
  }
});
