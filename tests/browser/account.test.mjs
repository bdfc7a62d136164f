// Deleting the account from the demo page: a confirmation inside the page
// (no window.confirm), usable with the keyboard and dismissed with Escape;
// after a fresh passkey verification the account goes, the page is back to
// logged out, the old token is refused, and logging in again fails with the
// server's own detail. Screenshots: screenshots/account-deletion/.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  ask, clickAndWait, expectText, idle, launchBrowser, message, PASSWORD, registerPasskey, scenario,
  signUp, startServer, text, uniqueUsername, verifyPasskey,
} from './harness.mjs';

test('delete account: confirmed in the page, then logged out for good', async (t) => {
  const server = await startServer();
  let browser;
  try {
    browser = await launchBrowser();
    const { page } = browser;
    await browser.addAuthenticator();
    const { step } = scenario(t, 'account-deletion', { page, server, pageErrors: browser.pageErrors });
    const username = uniqueUsername('leaving');
    let token = null;
    // A dialog (window.confirm and the like) would be a bug: fail on one.
    const dialogs = [];
    page.on('dialog', (dialog) => { dialogs.push(dialog.message()); dialog.dismiss(); });

    await step('freshly-verified', async () => {
      await page.goto(`${server.baseUrl}/`);
      await signUp(page, username);
      await registerPasskey(page, 'Key A');
      await verifyPasskey(page);
      token = await page.evaluate(() => sessionStorage.getItem('passkeyDemo.fullToken'));
      assert.ok(token, 'the full-level token is kept');
    });

    await step('confirmation-dismissed-with-escape', async () => {
      await page.focus('#delete-account');
      await page.keyboard.press('Enter');
      assert.ok(await page.locator('#delete-confirm').isVisible(), 'the confirmation is shown');
      assert.equal(await page.getAttribute('#delete-account', 'aria-expanded'), 'true');
      assert.match(await text(page, '#delete-confirm-text'), new RegExp(`Delete the account "${username}"`));
      assert.equal(await page.evaluate(() => document.activeElement.id), 'delete-account-cancel',
        'focus on the safe choice');
      await page.keyboard.press('Escape');
      assert.ok(await page.locator('#delete-confirm').isHidden(), 'Escape closes the confirmation');
      assert.equal(await page.evaluate(() => document.activeElement.id), 'delete-account',
        'focus back on "Delete account…"');
      assert.equal((await ask(server, 'GET', '/auth/me', { token })).status, 200, 'the account is still there');
    });

    await step('confirmation-shown', async () => {
      await page.keyboard.press('Enter');
      assert.ok(await page.locator('#delete-confirm').isVisible());
    }, { show: '#delete-confirm' });

    await step('account-deleted', async () => {
      await clickAndWait(page, '#delete-account-confirm');
      const m = await message(page);
      assert.equal(m.kind, 'success', `message: ${m.text}`);
      assert.match(m.text, new RegExp(`Account "${username}" deleted`));
      await expectText(page, '#auth-level', 'none');
      assert.equal(await text(page, '#session-status'), 'Not logged in.');
      assert.ok(await page.locator('#account-manage').isHidden(), 'no account controls');
      assert.ok(await page.locator('#me').isHidden(), 'no account facts');
      assert.equal(await page.evaluate(() => document.getElementById('account-forms').open), true,
        'the sign-up and log-in forms are back');
      assert.deepEqual(await page.evaluate(() => Object.keys(sessionStorage)), [], 'both tokens forgotten');
      assert.equal(await page.evaluate(() => document.activeElement.id), 'login-username');
      const me = await ask(server, 'GET', '/auth/me', { token });
      assert.equal(me.status, 401, `the old token after deletion: ${me.raw}`);
      assert.equal(me.json?.code, 'invalid_token', me.raw);
    });

    await step('login-refused-after-deletion', async () => {
      const direct = await ask(server, 'POST', '/auth/login', { body: { username, password: PASSWORD } });
      assert.equal(direct.status, 401, direct.raw);
      assert.ok(direct.json?.detail, 'the 401 has a detail');
      await page.fill('#login-username', username);
      await page.fill('#login-password', PASSWORD);
      await page.press('#login-password', 'Enter');
      await idle(page);
      const m = await message(page);
      assert.equal(m.kind, 'error', `message: ${m.text}`);
      assert.ok(m.text.includes(direct.json.detail), `message shows the server's detail "${direct.json.detail}": ${m.text}`);
      assert.equal(m.code, 'invalid_credentials');
      await expectText(page, '#auth-level', 'none');
    });

    await step('no-script-errors', async () => {
      assert.deepEqual(browser.pageErrors, [], 'no script errors or CSP violations on the page');
      assert.deepEqual(dialogs, [], 'no browser dialogs');
    }, { screenshot: false });
  } finally {
    await browser?.close();
    await server.stop();
  }
});
