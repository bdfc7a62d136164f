// Shared pieces of the browser suite: the real server binary on a free port
// with a fresh SQLite database, Debian's Chromium through playwright-core, a
// CDP virtual authenticator, screenshots, and small polling assertions on
// what the page shows.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));

export const SERVER_BIN = resolve(here, process.env.SERVER_BIN || '../../target/debug/passkey-auth');
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const SCREENSHOTS_DIR = join(here, 'screenshots');
export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 375, height: 812 };

// ------------------------------------------------------------------ server

// A port nobody listens on right now (listen on 0, read it, close).
export function freePort() {
  return new Promise((resolvePort, reject) => {
    const probe = createServer();
    probe.unref();
    probe.on('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolvePort(port));
    });
  });
}

// Starts the server binary with a clean environment (nothing inherited but
// PATH) plus `extraEnv`, and waits until GET / answers.
export async function startServer(extraEnv = {}) {
  if (!existsSync(SERVER_BIN)) {
    throw new Error(`server binary not found at ${SERVER_BIN}: run \`cargo build\` in the repository root, or set SERVER_BIN`);
  }
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'passkey-browser-'));
  const baseUrl = `http://localhost:${port}`;
  const env = {
    PATH: process.env.PATH || '/usr/bin:/bin',
    BIND_ADDR: `127.0.0.1:${port}`,
    DATABASE_URL: join(dataDir, 'auth.db'),
    RP_ID: 'localhost',
    RP_ORIGIN: baseUrl,
    RUST_LOG: 'warn',
    ...extraEnv,
  };
  const child = spawn(SERVER_BIN, [], { env, cwd: dataDir, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk) => { output = (output + chunk).slice(-20_000); };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let exited = null;
  const exitPromise = new Promise((r) => child.once('exit', (code, signal) => {
    exited = { code, signal };
    r(exited);
  }));
  // Never leave a server behind, even if the test process dies.
  const killOnExit = () => { try { child.kill('SIGKILL'); } catch (_) { /* gone */ } };
  process.once('exit', killOnExit);

  const server = {
    port,
    baseUrl,
    env,
    logs: () => output,
    async stop() {
      process.removeListener('exit', killOnExit);
      if (!exited) {
        child.kill('SIGTERM');
        let timer;
        const done = await Promise.race([
          exitPromise,
          new Promise((r) => { timer = setTimeout(() => r(null), 5_000); }),
        ]);
        clearTimeout(timer);
        if (!done) {
          child.kill('SIGKILL');
          await exitPromise;
        }
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };

  const deadline = Date.now() + 30_000;
  for (;;) {
    if (exited) {
      await server.stop();
      throw new Error(`server exited early (${JSON.stringify(exited)}); its output:\n${output}`);
    }
    try {
      const res = await fetch(`${baseUrl}/`);
      if (res.ok) break;
    } catch (_) { /* not listening yet */ }
    if (Date.now() > deadline) {
      await server.stop();
      throw new Error(`server did not answer GET / within 30 s; its output:\n${output}`);
    }
    await sleep(100);
  }
  return server;
}

// ------------------------------------------------------------------ browser

// No resident (discoverable) keys by default: the passkeys it creates step up
// a password login but cannot sign in alone, as before passkey sign-in
// existed. With a discoverable passkey on it, Chromium's virtual authenticator
// answers the page's autofill request (conditional mediation) at once, with
// no one picking anything, so the page would sign itself in after every
// logout; sign-in.test.mjs asks for `hasResidentKey: true` where it wants that.
export const AUTHENTICATOR = {
  protocol: 'ctap2',
  transport: 'internal',
  hasResidentKey: false,
  hasUserVerification: true,
  isUserVerified: true,
};

// Collects a page's script errors (CSP violations included) into `errors`.
export function collectErrors(page, errors) {
  page.on('pageerror', (err) => errors.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => {
    // Chromium logs each 4xx answer as "Failed to load resource": expected here.
    if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource')) {
      errors.push(`console: ${msg.text()}`);
    }
  });
}

// Headless Chromium at 1280x800 with the WebAuthn domain enabled; collects
// script errors (CSP violations included) so a test can assert there are none.
// newDevice() opens another browser context in it: another "device", with
// its own storage and, if asked, its own User-Agent.
export async function launchBrowser() {
  const browser = await chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run',
    ],
  });
  try {
    const context = await browser.newContext({ viewport: DESKTOP });
    const page = await context.newPage();
    page.setDefaultTimeout(10_000);
    const pageErrors = [];
    collectErrors(page, pageErrors);
    const cdp = await context.newCDPSession(page);
    await cdp.send('WebAuthn.enable');
    const authenticators = new Set(); // ids of the virtual authenticators present
    return {
      browser,
      context,
      page,
      cdp,
      pageErrors,
      authenticators,
      async addAuthenticator(overrides = {}) {
        const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
          options: { ...AUTHENTICATOR, ...overrides },
        });
        authenticators.add(authenticatorId);
        return authenticatorId;
      },
      async removeAuthenticator(authenticatorId) {
        await cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId });
        authenticators.delete(authenticatorId);
      },
      async removeAllAuthenticators() {
        for (const id of [...authenticators]) await this.removeAuthenticator(id);
      },
      // Another device: a new context (its own sessionStorage), no authenticator.
      async newDevice({ userAgent, viewport = DESKTOP } = {}) {
        const deviceContext = await browser.newContext({ viewport, ...(userAgent ? { userAgent } : {}) });
        const devicePage = await deviceContext.newPage();
        devicePage.setDefaultTimeout(10_000);
        const errors = [];
        collectErrors(devicePage, errors);
        return { context: deviceContext, page: devicePage, pageErrors: errors, close: () => deviceContext.close() };
      },
      close: () => browser.close(),
    };
  } catch (err) {
    await browser.close();
    throw err;
  }
}

// ------------------------------------------------------------------ steps and screenshots

// Runs named steps as subtests of `t`, each followed by a viewport screenshot
// screenshots/<scenario>/<NN-step>.png (NN-step-FAILED.png on failure). After
// a failure the remaining steps are skipped rather than failing in cascade,
// and the failing one reports the page's script errors and the server's output.
export function scenario(t, name, { page, server, pageErrors = [] }) {
  const dir = join(SCREENSHOTS_DIR, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  let count = 0;
  let failed = null;

  // `show`: a selector to bring fully into view first (bottom-aligned, so the
  // page above it stays visible too).
  // `target`: another page to take it of (a second device).
  async function shot(label, show, target = page) {
    if (show) {
      await target.locator(show).first().evaluate((el) => {
        const box = el.getBoundingClientRect();
        if (box.bottom > window.innerHeight) el.scrollIntoView({ block: 'end' });
        else if (box.top < 0) el.scrollIntoView({ block: 'start' });
      });
    }
    // Let a scroll or resize reach the screen first.
    await target.evaluate(() => new Promise((r) => { requestAnimationFrame(() => requestAnimationFrame(r)); }));
    count += 1;
    const file = join(dir, `${String(count).padStart(2, '0')}-${label}.png`);
    await target.screenshot({ path: file, fullPage: false });
    return file;
  }

  // options.show: see shot(); options.page: the page to take the step's
  // screenshot of (default: the scenario's); options.screenshot: false for
  // steps that save their own screenshots.
  async function step(label, fn, options = {}) {
    if (failed) {
      await t.test(label, { skip: `earlier step "${failed}" failed` }, () => {});
      return;
    }
    await t.test(label, async (st) => {
      try {
        await fn();
      } catch (err) {
        failed = label;
        try { await shot(`${label}-FAILED`, undefined, options.page || page); } catch (_) { /* page gone */ }
        if (pageErrors.length) st.diagnostic(`page script errors:\n${pageErrors.join('\n')}`);
        if (server) st.diagnostic(`server output (tail):\n${server.logs().slice(-4_000) || '(none)'}`);
        throw err;
      }
      if (options.screenshot !== false) await shot(label, options.show, options.page || page);
    });
  }

  return { step, shot, failed: () => failed };
}

// ------------------------------------------------------------------ page reading

// textContent, not innerText: the badge is text-transform: uppercase.
export async function text(page, selector) {
  return ((await page.locator(selector).first().textContent()) || '').trim();
}

// Polls `read` until `check` accepts its value; fails with `what` and the last value.
export async function eventually(read, check, what, timeout = 10_000) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await read();
    if (check(last)) return last;
    if (Date.now() > deadline) {
      throw new Error(`${what}: timed out after ${timeout} ms; last value: ${JSON.stringify(last)}`);
    }
    await sleep(100);
  }
}

export function expectText(page, selector, expected, timeout) {
  const ok = expected instanceof RegExp ? (v) => expected.test(v) : (v) => v === expected;
  return eventually(() => text(page, selector), ok, `${selector} should show ${expected}`, timeout);
}

// The page sets aria-busy="true" on <body> while an action runs.
export function idle(page, timeout = 15_000) {
  return eventually(() => page.getAttribute('body', 'aria-busy'), (v) => v === 'false',
    'page should become idle (body aria-busy="false")', timeout);
}

// Clicks and waits until the action it started is over.
export async function clickAndWait(page, selector) {
  await page.click(selector);
  await idle(page);
}

export async function message(page) {
  return {
    text: await text(page, '#message'),
    kind: ((await page.getAttribute('#message', 'class')) || '').replace(/.*message--/, ''),
    code: await page.getAttribute('#message', 'data-code'),
    status: await page.getAttribute('#message', 'data-status'),
  };
}

export async function result(page) {
  const body = await text(page, '#result-body');
  let json = null;
  try { json = JSON.parse(body); } catch (_) { /* not JSON */ }
  return {
    status: await page.getAttribute('#result', 'data-status'),
    heading: await text(page, '#result-status'),
    body,
    json,
  };
}

export const isDisabled = (page, selector) => page.locator(selector).first().isDisabled();

// Presses Tab until `selector` has focus (at most `max` presses), as a
// keyboard-only person would.
export async function tabTo(page, selector, max = 40) {
  for (let i = 0; i < max; i += 1) {
    if (await page.locator(selector).first().evaluate((el) => el === document.activeElement)) return i;
    await page.keyboard.press('Tab');
  }
  throw new Error(`${selector} was not reached with ${max} presses of Tab`);
}

// Shows the page at phone width, checks nothing overflows sideways, and
// saves a screenshot of the top of the page, then one scrolled to each of
// `sections` (selectors); then restores the desktop viewport.
export async function phoneShot(page, shot, label, sections = []) {
  await page.setViewportSize(PHONE);
  try {
    await page.evaluate(() => window.scrollTo(0, 0));
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    await shot(label);
    for (const selector of sections) {
      // Below the sticky message, which stays at the top of the screen.
      await page.locator(selector).evaluate((el) => {
        const message = document.getElementById('message');
        window.scrollTo(0, window.scrollY + el.getBoundingClientRect().top - message.offsetHeight - 16);
      });
      await shot(`${label}-${selector.replace(/^#/, '')}`);
    }
    if (overflow > 0) throw new Error(`page overflows a ${PHONE.width}px wide screen by ${overflow}px`);
  } finally {
    await page.setViewportSize(DESKTOP);
  }
}

export function uniqueUsername(prefix) {
  return `${prefix}_${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
}

// ------------------------------------------------------------------ network gates

// Holds the page's next request matching `pattern` (a Playwright URL glob)
// until release() is called, then lets it through unchanged: a way to look
// at the page while it waits for that answer. `reached` resolves once the
// page sent the request.
export async function gate(page, pattern) {
  let reachedResolve;
  let releaseResolve;
  const reached = new Promise((r) => { reachedResolve = r; });
  const released = new Promise((r) => { releaseResolve = r; });
  await page.route(pattern, async (route) => {
    reachedResolve();
    await released;
    await route.continue();
  }, { times: 1 });
  return { reached, release: () => releaseResolve() };
}

// A second passkey on the same virtual authenticator is impossible (the
// registration options exclude the credential it holds), and with two
// authenticators present Chromium would race them. So: once the server
// answers GET /passkeys/register/options with 200 (a refused attempt is
// passed on untouched), every authenticator is removed and a new, empty one
// added before the page gets the options; the passkey prompt that follows
// creates the new passkey on it. Returns a promise of the new authenticator's id.
export async function newAuthenticatorForNextRegistration(browser) {
  const pattern = '**/passkeys/register/options';
  let resolveId;
  const newId = new Promise((r) => { resolveId = r; });
  let done = false;
  const handler = async (route) => {
    if (done) {
      await route.fallback();
      return;
    }
    const response = await route.fetch();
    if (response.ok()) {
      done = true;
      await browser.removeAllAuthenticators();
      resolveId(await browser.addAuthenticator());
    }
    await route.fulfill({ response });
    // Only now: a handler removed while it runs has its route continued for it.
    if (done) await browser.page.unroute(pattern, handler);
  };
  await browser.page.route(pattern, handler);
  return newId;
}

// ------------------------------------------------------------------ page flows

export const PASSWORD = 'correct horse battery staple';

// Signs up through the form (the page logs in right after).
export async function signUp(page, username, password = PASSWORD) {
  await page.fill('#signup-username', username);
  await page.fill('#signup-password', password);
  await clickAndWait(page, '#signup-submit');
  const m = await message(page);
  if (m.kind !== 'success') throw new Error(`signup message: ${m.text}`);
  await expectText(page, '#auth-level', 'password');
}

export async function logIn(page, username, password = PASSWORD) {
  await page.fill('#login-username', username);
  await page.fill('#login-password', password);
  await clickAndWait(page, '#login-submit');
  const m = await message(page);
  if (m.kind !== 'success') throw new Error(`login message: ${m.text}`);
  await expectText(page, '#auth-level', 'password');
}

export async function logOut(page) {
  await page.click('#logout');
  await expectText(page, '#auth-level', 'none');
}

// The recovery codes on show.
export const shownCodes = (page) => page.locator('#codes-list code').allTextContents();

// Registers a passkey with `nickname`, when no re-verification is needed.
// The account's first passkey shows the recovery codes: they are read and
// the panel dismissed; the codes are returned ([] for a further passkey).
export async function registerPasskey(page, nickname) {
  await page.fill('#passkey-nickname', nickname);
  await clickAndWait(page, '#register-passkey');
  const m = await message(page);
  if (m.kind !== 'success') throw new Error(`registration message: ${m.text}`);
  await expectText(page, '#passkey-list', new RegExp(nickname));
  if (await page.locator('#codes-panel').isHidden()) return [];
  const codes = await shownCodes(page);
  await page.click('#codes-done');
  await page.locator('#codes-panel').waitFor({ state: 'hidden' });
  return codes;
}

export async function verifyPasskey(page) {
  await clickAndWait(page, '#verify-passkey');
  const m = await message(page);
  if (m.kind !== 'success') throw new Error(`verification message: ${m.text}`);
  await expectText(page, '#auth-level', 'full');
  await expectText(page, '#claim-amr', 'pwd, hwk');
}

// What the server answers to a request, asked directly (not through the page).
export async function ask(server, method, path, { token, body } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(`${server.baseUrl}${path}`, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const raw = await res.text();
  let json = null;
  try { json = JSON.parse(raw); } catch (_) { /* empty or not JSON */ }
  return { status: res.status, json, raw, wwwAuthenticate: res.headers.get('www-authenticate') };
}

// What the page keeps in sessionStorage: its tokens, raw.
export async function storedTokens(page) {
  return page.evaluate(() => ({
    password: sessionStorage.getItem('passkeyDemo.passwordToken'),
    full: sessionStorage.getItem('passkeyDemo.fullToken'),
    refresh: sessionStorage.getItem('passkeyDemo.refreshToken'),
  }));
}

// A JWT's payload, unverified.
export function claimsOf(token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'));
}

export const sleep = (ms) => new Promise((r) => { setTimeout(r, ms); });
