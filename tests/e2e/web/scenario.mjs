// The web UI in a real headless Chromium, driven by playwright-core: the acceptance steps of
// issue #11 against a running `modelreg serve` that test_web_ui.py started and seeded.
// Input (environment): BASE_URL, ALICE_TOKEN, BOB_TOKEN, MODEL, SCREENSHOTS, CHROMIUM.
// Output: one JSON line per step on stdout; exit code 1 with the failed step on stderr.
import { mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../../..");
const { chromium } = await import(pathToFileURL(join(root, "clients/web/node_modules/playwright-core/index.mjs")).href);

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const BASE = env("BASE_URL");
const ALICE = env("ALICE_TOKEN");
const BOB = env("BOB_TOKEN");
const MODEL = env("MODEL");
const SHOTS = env("SCREENSHOTS");
mkdirSync(SHOTS, { recursive: true });
const TIMEOUT = 15_000;

function check(condition, message) {
  if (!condition) throw new Error(message);
}

function report(step, detail = {}) {
  process.stdout.write(`${JSON.stringify({ step, ...detail })}\n`);
}

// Wait until exactly `count` elements match: lists re-render when their query changes.
async function settle(page, selector, count) {
  try {
    await page.waitForFunction(([sel, n]) => document.querySelectorAll(sel).length === n, [selector, count], { timeout: 5_000 });
  } catch {
    // The caller's check reports the count that was there.
  }
}

async function shot(page, name) {
  const path = join(SHOTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  report("screenshot", { path });
}

async function signIn(page, token, who) {
  if (process.env.AUTH_MODE === "token") {
    // Token mode: the app sends an unauthenticated visitor to the sign-in page first.
    await page.goto(`${BASE}/`);
    await page.waitForURL(/\/signin/, { timeout: TIMEOUT });
  } else {
    await page.goto(`${BASE}/signin`);
  }
  await page.getByLabel("Token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByTestId("principal").filter({ hasText: who }).waitFor({ timeout: TIMEOUT });
  report("signed-in", { who });
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
let current = "start";
const consoleErrors = [];
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  context.setDefaultTimeout(TIMEOUT);
  const alice = await context.newPage();
  alice.on("pageerror", (e) => consoleErrors.push(String(e)));

  current = "sign-in refuses a wrong token";
  await alice.goto(`${BASE}/signin`);
  await alice.getByLabel("Token").fill("not-a-token");
  await alice.getByRole("button", { name: "Sign in" }).click();
  const refused = await alice.locator("#token-error").textContent();
  check(/not valid/i.test(refused ?? ""), `sign-in error was ${JSON.stringify(refused)}`);
  report("wrong-token-refused", { message: refused });

  current = "alice signs in";
  await signIn(alice, ALICE, "alice");

  current = "search finds a model";
  await alice.getByLabel("Search models").fill("fraud");
  await alice.getByRole("button", { name: "Search" }).click();
  await alice.waitForURL(/\?q=fraud/);
  const cards = alice.getByTestId("model-card");
  await cards.filter({ hasText: MODEL }).waitFor();
  await settle(alice, '[data-testid="model-card"]', 1);
  check((await cards.count()) === 1, `search "fraud" showed ${await cards.count()} models`);
  await shot(alice, "catalogue-search");
  report("search", { query: "fraud", found: await cards.allInnerTexts().then((t) => t.map((x) => x.split("\n")[0])) });

  current = "a tag filter uses the registry's grammar";
  await alice.goto(`${BASE}/?q=${encodeURIComponent('tags.team = "risk"')}`);
  await cards.filter({ hasText: "credit-risk" }).waitFor();
  await settle(alice, '[data-testid="model-card"]', 2);
  const risk = (await cards.allInnerTexts()).map((t) => t.split("\n")[0]).sort();
  check(JSON.stringify(risk) === JSON.stringify(["credit-risk", MODEL].sort()), `tag filter found ${risk}`);
  report("tag-filter", { found: risk });

  current = "a bad filter names the field";
  await alice.goto(`${BASE}/?q=${encodeURIComponent("nonsense = ")}`);
  const filterError = alice.getByRole("alert");
  await filterError.waitFor();
  check(/filter/.test(await filterError.innerText()), "a malformed filter did not name the filter field");
  report("bad-filter", { shown: (await filterError.innerText()).split("\n").slice(0, 3) });

  current = "the model page";
  await alice.goto(`${BASE}/`);
  await alice.getByRole("link", { name: MODEL, exact: true }).click();
  await alice.waitForURL(new RegExp(`/models/${MODEL}$`));
  const champion = alice.locator('tr[data-alias="champion"]');
  await champion.waitFor();
  check((await champion.innerText()).includes("v1"), "champion is not on v1 before the approval");
  await alice.locator("figure.chart svg").waitFor();
  await alice.getByRole("heading", { name: "Deployments" }).waitFor();
  await shot(alice, "model");
  report("model-page", { champion: "v1" });

  current = "a version's lineage graph renders";
  await alice.goto(`${BASE}/models/${MODEL}/versions/2`);
  const graph = alice.getByTestId("lineage-graph");
  await graph.waitFor();
  const nodes = await graph.locator("g.node").evaluateAll((els) => els.map((e) => e.getAttribute("data-node")));
  const edges = await graph.locator("path.edge").count();
  check(nodes.some((n) => n.startsWith("datasets/")), `no dataset node in ${nodes}`);
  check(nodes.some((n) => /\/runs\//.test(n)), `no run node in ${nodes}`);
  check(nodes.includes(`models/${MODEL}/versions/2`), `the version itself is not drawn: ${nodes}`);
  check(edges >= 2, `only ${edges} edges drawn`);
  await alice.getByTestId("signature").waitFor();
  const files = await alice.getByTestId("files").locator("tbody tr").count();
  check(files === 2, `${files} files listed`);
  await alice.getByRole("heading", { name: "Source run" }).waitFor();
  check((await alice.locator("table.kv").first().innerText()).includes("max_depth"), "run params missing");
  await shot(alice, "version");
  report("lineage", { nodes, edges, files });

  current = "a download through the gateway";
  const [download] = await Promise.all([
    alice.waitForEvent("download"),
    alice.getByTestId("files").getByRole("link", { name: "Download" }).first().click(),
  ]);
  report("download", { file: download.suggestedFilename() });

  current = "a bad request shows the field";
  await alice.getByText("Request a promotion").click();
  await alice.getByLabel("Alias", { exact: true }).fill("not a valid alias!");
  await alice.getByRole("button", { name: "Request", exact: true }).click();
  const invalid = alice.locator(".panel .error");
  await invalid.waitFor();
  const invalidText = await invalid.innerText();
  check(/InvalidArgument/.test(invalidText), `expected InvalidArgument, got ${invalidText}`);
  check((await invalid.locator(".violations code").count()) > 0, "no field violation shown");
  await shot(alice, "version-invalid-request");
  report("field-violation", { shown: await invalid.locator(".violations li").allInnerTexts() });

  current = "self-approval is visibly impossible";
  await alice.getByRole("link", { name: "Approvals" }).click();
  const mine = alice.getByTestId("request").filter({ hasText: "@champion" });
  await mine.waitFor();
  check(await mine.getByRole("button", { name: "Approve" }).isDisabled(), "alice can press Approve on her own request");
  const why = await mine.getByTestId("self-approval").innerText();
  check(/cannot approve/.test(why), `self-approval explanation: ${why}`);
  await mine.locator(".check.pass").first().waitFor();
  const checks = await mine.locator(".check").allInnerTexts();
  await shot(alice, "approvals-self");
  report("self-approval-refused", { message: why, checks });

  current = "bob watches the audit log live";
  const watcher = await context.newPage();
  watcher.on("pageerror", (e) => consoleErrors.push(String(e)));
  await signIn(watcher, BOB, "bob");
  await watcher.goto(`${BASE}/audit?model=${MODEL}`);
  await watcher.getByTestId("events").waitFor();
  await watcher.getByTestId("live-waiting").waitFor();

  current = "a failing policy check: shown, and the server's refusal readable";
  const reviewer = await context.newPage();
  reviewer.on("pageerror", (e) => consoleErrors.push(String(e)));
  await signIn(reviewer, BOB, "bob");
  await reviewer.goto(`${BASE}/approvals`);
  const blocked = reviewer.getByTestId("request").filter({ hasText: "stage Production" });
  await blocked.locator(".check.fail").waitFor();
  await blocked.getByRole("button", { name: "Approve" }).click();
  const refusal = blocked.locator(".error");
  await refusal.waitFor();
  const refusalText = await refusal.innerText();
  check(/FailedPrecondition/.test(refusalText) && /tags\.validated/.test(refusalText), `refusal shown as ${refusalText}`);
  await shot(reviewer, "approvals-refused");
  report("policy-check-refused", { shown: refusalText.split("\n").filter(Boolean) });
  await reviewer.close();

  current = "bob approves alice's request";
  const bob = await context.newPage();
  bob.on("pageerror", (e) => consoleErrors.push(String(e)));
  await signIn(bob, BOB, "bob");
  await bob.goto(`${BASE}/approvals`);
  const theirs = bob.getByTestId("request").filter({ hasText: "@champion" });
  await theirs.waitFor();
  check(await theirs.getByRole("button", { name: "Approve" }).isEnabled(), "bob cannot approve");
  await theirs.getByLabel("Comment").fill("Checked the November metrics");
  await shot(bob, "approvals-review");
  await theirs.getByRole("button", { name: "Approve" }).click();
  const outcome = bob.getByTestId("outcome");
  await outcome.waitFor();
  const outcomeText = await outcome.innerText();
  check(/Applied/.test(outcomeText), `approval outcome: ${outcomeText}`);
  report("approved", { outcome: outcomeText });

  current = "the alias moved";
  await bob.goto(`${BASE}/models/${MODEL}`);
  const moved = bob.locator('tr[data-alias="champion"]');
  await moved.waitFor();
  check((await moved.innerText()).includes("v2"), "champion did not move to v2");
  report("alias-moved", { champion: "v2" });

  current = "a live event appears without reload";
  const live = watcher.getByTestId("live-events");
  await live.locator('tr[data-type="model_version.alias_set"]').waitFor();
  const liveTypes = await live.locator("tbody tr").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-type")));
  await shot(watcher, "audit-live");
  report("live-event", { types: liveTypes });

  current = "the audit page shows the steps";
  await watcher.reload();
  const logged = watcher.getByTestId("events");
  await logged.locator(`tr[data-type="model_version.alias_set"]`).first().waitFor();
  const rows = await logged.locator("tbody tr").evaluateAll((trs) =>
    trs.map((tr) => [tr.getAttribute("data-type"), tr.children[4]?.textContent ?? ""]),
  );
  const pairs = new Set(rows.map(([type, actor]) => `${type}/${actor}`));
  for (const wanted of [
    "transition_request.created/alice",
    "transition_request.approved/bob",
    "model_version.alias_set/bob",
    "policy.updated/alice",
  ]) {
    check(pairs.has(wanted), `the audit log lacks ${wanted}: ${[...pairs]}`);
  }
  await shot(watcher, "audit");

  current = "the audit filter by actor";
  await watcher.goto(`${BASE}/audit?model=${MODEL}&actor=bob`);
  await logged.locator("tbody tr").first().waitFor();
  const actors = await logged.locator("tbody tr").evaluateAll((trs) => trs.map((tr) => tr.children[4]?.textContent));
  check(actors.length > 0 && actors.every((a) => a === "bob"), `actor filter showed ${actors}`);
  report("audit", { steps: [...pairs].sort(), bob_only: actors.length });

  check(consoleErrors.length === 0, `page errors: ${consoleErrors.join("; ")}`);
  report("done");
} catch (error) {
  process.stderr.write(`step "${current}" failed: ${error?.stack ?? error}\n`);
  try {
    const pages = browser.contexts().flatMap((c) => c.pages());
    for (const [i, page] of pages.entries()) await shot(page, `failure-${i}`);
  } catch {
    // The failure itself is what matters; a missing screenshot must not hide it.
  }
  process.exitCode = 1;
} finally {
  await browser.close();
}
