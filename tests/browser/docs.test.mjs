// Swagger UI at /docs/: it renders every operation of /openapi.json under
// the page's strict Content-Security-Policy (no violation reported, the
// one inline <style> allowed by its hash), and "Try it out" reaches the
// server (connect-src 'self'). Screenshots: screenshots/swagger-ui/.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { eventually, launchBrowser, scenario, startServer } from './harness.mjs';

test('Swagger UI: every operation rendered, no CSP violation, Try it out works', async (t) => {
  const server = await startServer();
  let browser;
  try {
    browser = await launchBrowser();
    const { page } = browser;
    // Every violation, reported or not in the console.
    await page.addInitScript(() => {
      window.cspViolations = [];
      document.addEventListener('securitypolicyviolation', (e) => {
        window.cspViolations.push(`${e.effectiveDirective} ${e.blockedURI || 'inline'}`);
      });
    });
    const { step } = scenario(t, 'swagger-ui', { page, server, pageErrors: browser.pageErrors });
    const doc = await (await fetch(`${server.baseUrl}/openapi.json`)).json();
    const operations = Object.values(doc.paths).reduce((n, item) => n + Object.keys(item).length, 0);

    await step('rendered', async () => {
      await page.goto(`${server.baseUrl}/docs`);
      assert.equal(new URL(page.url()).pathname, '/docs/');
      await eventually(() => page.locator('.opblock').count(), (n) => n === operations,
        `${operations} operations rendered`);
      assert.match(await page.locator('.info .title').first().textContent(), /passkey-auth/);
    });

    await step('guarded-operation-shows-its-refusals', async () => {
      const op = page.locator('#operations-account-deleteMe');
      await op.locator('.opblock-summary').first().click();
      await op.locator('.responses-table').first().waitFor();
      const codes = await op.locator('.responses-table .response-col_status').allTextContents();
      for (const status of ['204', '401', '403', '500', '503']) {
        assert.ok(codes.some((c) => c.trim().startsWith(status)), `${status} in ${codes.join(', ')}`);
      }
      assert.match(await op.textContent(), /Guard: recent/);
    }, { show: '#operations-account-deleteMe' });

    await step('try-it-out', async () => {
      const op = page.locator('#operations-health-healthz');
      await op.locator('.opblock-summary').first().click();
      await op.locator('button.try-out__btn').click();
      await op.locator('button.execute').click();
      await eventually(
        async () => (await op.locator('.live-responses-table .response-col_status').allTextContents()).join(' '),
        (s) => s.includes('200'), 'the live answer is 200');
    }, { show: '#operations-health-healthz' });

    await step('no-csp-violation', async () => {
      assert.deepEqual(await page.evaluate(() => window.cspViolations), []);
      assert.deepEqual(browser.pageErrors, []);
    });
  } finally {
    if (browser) await browser.close();
    await server.stop();
  }
});
