// Recovery codes on the demo page: the first passkey shows ten codes once
// (readable, copyable, dismissed for good); with no authenticator at hand a
// code typed in another case and with spaces stands in for the passkey
// (authLevel full, amr pwd, otp); a spent code is refused with the server's
// own detail; "New recovery codes" replaces the set and the old codes stop
// working. Screenshots: screenshots/recovery/.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  ask, clickAndWait, expectText, launchBrowser, logIn, logOut, message, PASSWORD, phoneShot,
  registerPasskey, scenario, shownCodes, signUp, startServer, text, uniqueUsername,
} from './harness.mjs';

// As a person might type a code read from paper: upper case, a space for the hyphen.
const retyped = (code) => code.toUpperCase().replace(/-/g, ' ');

async function useRecoveryCode(page, code) {
  await page.fill('#recovery-code', code);
  await clickAndWait(page, '#use-recovery-code');
  return message(page);
}

test('recovery codes: shown once, copied, each works once, replaced', async (t) => {
  const server = await startServer();
  let browser;
  try {
    browser = await launchBrowser();
    const { page, context } = browser;
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.baseUrl });
    await browser.addAuthenticator();
    const { step, shot } = scenario(t, 'recovery', { page, server, pageErrors: browser.pageErrors });
    const username = uniqueUsername('recover');
    let codes = [];

    await step('first-passkey-shows-codes', async () => {
      await page.goto(`${server.baseUrl}/`);
      await signUp(page, username);
      await page.fill('#passkey-nickname', 'Only key');
      await clickAndWait(page, '#register-passkey');
      const m = await message(page);
      assert.equal(m.kind, 'success', `registration message: ${m.text}`);
      assert.match(m.text, /first one: store the recovery codes/);
      assert.ok(await page.locator('#codes-panel').isVisible(), 'the codes panel is shown');
      await expectText(page, '#codes-heading', 'Store these recovery codes now — they will not be shown again');
      codes = await shownCodes(page);
      assert.equal(codes.length, 10, `ten codes: ${JSON.stringify(codes)}`);
      assert.equal(new Set(codes).size, 10, 'all different');
      for (const code of codes) assert.match(code, /^[A-Za-z0-9][A-Za-z0-9 -]{7,}$/, `a readable code: ${code}`);
      const font = await page.locator('#codes-list code').first().evaluate((el) => getComputedStyle(el).fontFamily);
      assert.match(font, /mono/i, `codes in a monospace font: ${font}`);
      await expectText(page, '#me-recovery-remaining', '10 left');
    }, { show: '#codes-panel' });

    await step('codes-copied', async () => {
      await page.click('#codes-copy');
      await expectText(page, '#codes-copy-status', 'Copied 10 codes to the clipboard.');
      assert.match((await message(page)).text, /copied to the clipboard/);
      const clipboard = await page.evaluate(() => navigator.clipboard.readText());
      assert.deepEqual(clipboard.trim().split('\n'), codes, 'the clipboard holds the codes, one a line');
    }, { show: '#codes-panel' });

    await step('codes-phone-width', async () => {
      await phoneShot(page, shot, 'codes-phone-width-375', ['#codes-panel']);
    }, { screenshot: false });

    await step('codes-dismissed', async () => {
      await page.click('#codes-done');
      assert.ok(await page.locator('#codes-panel').isHidden(), 'the panel is gone');
      assert.equal(await page.locator('#codes-list code').count(), 0, 'and the codes with it');
      assert.equal(await page.evaluate(() => document.activeElement.id), 'new-recovery-codes',
        'focus moves on to "New recovery codes"');
      const html = await page.content();
      assert.ok(!codes.some((code) => html.includes(code)), 'no code left anywhere in the page');
    });

    await step('logged-in-without-authenticator', async () => {
      await logOut(page);
      await browser.removeAllAuthenticators(); // no passkey at hand
      await logIn(page, username);
      await expectText(page, '#me-passkey-count', '1');
      assert.ok(await page.locator('#recovery-form').isVisible(), '"Use a recovery code" is offered');
    }, { show: '#recovery-form' });

    await step('recovery-code-used', async () => {
      const m = await useRecoveryCode(page, retyped(codes[0]));
      assert.equal(m.kind, 'success', `message: ${m.text}`);
      assert.match(m.text, /Recovery code accepted: token upgraded \(authLevel: full, amr: pwd, otp\)/);
      assert.match(m.text, /9 recovery codes left/);
      await expectText(page, '#auth-level', 'full');
      assert.equal(await text(page, '#claim-acr'), 'full');
      assert.equal(await text(page, '#claim-amr'), 'pwd, otp');
      assert.equal(await text(page, '#session-status'), 'Logged in with a password and a recovery code.');
      await expectText(page, '#me-recovery-remaining', '9 left');
      assert.ok(await page.locator('#recovery-form').isHidden(), 'no recovery form at full level');
      assert.equal(await page.inputValue('#recovery-code'), '', 'the code is cleared');
    });

    await step('spent-code-refused', async () => {
      // What the server says to a spent code, asked directly.
      const login = await ask(server, 'POST', '/auth/login', { body: { username, password: PASSWORD } });
      assert.equal(login.status, 200, login.raw);
      const direct = await ask(server, 'POST', '/auth/recovery', {
        token: login.json.accessToken, body: { code: codes[0] },
      });
      assert.equal(direct.status, 401, direct.raw);
      assert.equal(direct.json?.code, 'invalid_recovery_code', direct.raw);
      assert.ok(direct.json?.detail, 'the 401 has a detail');

      await logOut(page);
      await logIn(page, username);
      const m = await useRecoveryCode(page, codes[0]);
      assert.equal(m.kind, 'error', `message: ${m.text}`);
      assert.ok(m.text.includes(direct.json.detail), `message shows the server's detail "${direct.json.detail}": ${m.text}`);
      assert.equal(m.code, 'invalid_recovery_code');
      assert.equal(m.status, '401');
      await expectText(page, '#auth-level', 'password');
      await expectText(page, '#me-recovery-remaining', '9 left');
      assert.equal(await page.inputValue('#recovery-code'), codes[0], 'the code is kept to correct it');
    });

    await step('another-code-works', async () => {
      const m = await useRecoveryCode(page, codes[1]);
      assert.equal(m.kind, 'success', `message: ${m.text}`);
      await expectText(page, '#claim-amr', 'pwd, otp');
      await expectText(page, '#me-recovery-remaining', '8 left');
    });

    let fresh = [];
    await step('codes-replaced', async () => {
      // Full level from a recovery code, just now: recent enough to replace the codes.
      await clickAndWait(page, '#new-recovery-codes');
      const m = await message(page);
      assert.equal(m.kind, 'success', `message: ${m.text}`);
      assert.match(m.text, /10 new recovery codes created; the previous ones no longer work/);
      assert.ok(await page.locator('#codes-panel').isVisible(), 'the new codes are shown the same way');
      fresh = await shownCodes(page);
      assert.equal(fresh.length, 10);
      assert.ok(!fresh.some((code) => codes.includes(code)), 'all new');
      await expectText(page, '#me-recovery-remaining', '10 left');
      await page.click('#codes-done');
      assert.ok(await page.locator('#codes-panel').isHidden());
    });

    await step('old-codes-refused-new-ones-work', async () => {
      await logOut(page);
      await logIn(page, username);
      const old = await useRecoveryCode(page, codes[2]);
      assert.equal(old.kind, 'error', `an unused old code: ${old.text}`);
      assert.equal(old.code, 'invalid_recovery_code');
      const m = await useRecoveryCode(page, retyped(fresh[0]));
      assert.equal(m.kind, 'success', `a new code: ${m.text}`);
      await expectText(page, '#auth-level', 'full');
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
