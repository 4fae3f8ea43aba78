'use strict';
// The kit with the vendor's own SDK (leancloud-realtime 4.3.1, installed by `make tools`
// into .local/leancloud-realtime), against the service under test and a stand-in of the
// vendor's realtime server that checks every signature (standin.js). Run by
// e2e/tests/api/js_kit.rs, which registers a fresh app and passes, in the environment:
// KIT_BASE_URL, KIT_APP_ID, KIT_MASTER_KEY (for the stand-in only), KIT_TOKENS (a JSON
// map client id -> token), KIT_SDK_MODULES (the SDK's node_modules), and the app's
// Tencent settings, KIT_TENCENT_SDK_APP_ID and KIT_TENCENT_KEY (to check UserSigs).

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const http = require('node:http');
const crypto = require('node:crypto');
const zlib = require('node:zlib');
const { signatureFactories, getUserSig } = require('..');
const { StandIn } = require('./standin');

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run through e2e/tests/api/js_kit.rs (make test)`);
  return v;
}

const baseUrl = need('KIT_BASE_URL');
const appId = need('KIT_APP_ID');
const masterKey = need('KIT_MASTER_KEY');
const tokens = JSON.parse(need('KIT_TOKENS'));
const sdkModules = need('KIT_SDK_MODULES');
const tencentSdkAppId = Number(need('KIT_TENCENT_SDK_APP_ID'));
const tencentKey = need('KIT_TENCENT_KEY');
const { Realtime } = require(path.join(sdkModules, 'leancloud-realtime'));

// ASCII, CJK and ids outside the BMP; 𠮷野 and ｹｲ sort one way by UTF-16 (the SDK's
// order) and the other by UTF-8 bytes.
const OWNER = 'alice';
const CJK = '李雷';
const NON_BMP = '𠮷野';
const HALFWIDTH = 'ｹｲ';
const MEMBER = 'bob';
const STRANGER = 'mallory';

// Every signature the service answered, by route, through the kit's fetch.
const issued = [];
async function recordingFetch(url, init) {
  const res = await fetch(url, init);
  const route = new URL(url).pathname.split('/').slice(1, 3).join('/');
  if (route.startsWith('signature/') && res.status === 200) issued.push(decodeURIComponent(new URL(url).pathname));
  return res;
}

function kit(tokenOf) {
  return signatureFactories({ baseUrl, appId, getToken: () => tokens[tokenOf], fetch: recordingFetch });
}

async function api(as, method, route, body) {
  const res = await fetch(baseUrl + route, {
    method,
    headers: { authorization: `Bearer ${tokens[as]}`, 'content-type': 'application/json' },
    body: body && JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function groupMembers(group) {
  const res = await api(OWNER, 'GET', `/im/group/${group}/member?limit=100`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.members.map((m) => m.client_id).sort();
}

let standin;
let url;
let realtime;
let group;
const clients = [];
const realtimes = [];

// A Realtime (one connection to the stand-in, shared by its clients). A client id that
// already has a client on a Realtime gets that one back, unsigned: a login to test
// takes a Realtime of its own.
function newRealtime() {
  const r = new Realtime({ appId, appKey: 'not-used-by-the-stand-in', RTMServers: url });
  realtimes.push(r);
  return r;
}

async function login(id, tokenOf = id, factories = kit(tokenOf), on = realtime) {
  const client = await on.createIMClient(id, factories);
  clients.push(client);
  return client;
}

// Expects `run` to be refused by the service with a 403 naming a rule, with no signature
// issued and nothing new at the stand-in.
async function refused(run, pattern) {
  const before = { issued: issued.length, accepted: standin.accepted.length };
  await assert.rejects(run, (e) => {
    assert.match(e.message, /refused with 403/);
    assert.match(e.message, pattern);
    return true;
  });
  assert.equal(issued.length, before.issued, `no signature issued: ${issued.slice(before.issued)}`);
  assert.equal(standin.accepted.length, before.accepted);
}

test.before(async () => {
  standin = new StandIn({ sdkModules, appId, masterKey });
  url = await standin.start();
  realtime = newRealtime();
  const created = await api(OWNER, 'POST', '/im/group', {
    group_name: 'kit',
    member_client_ids: [CJK, MEMBER],
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  group = String(created.body.group_id);
  // The group's conversation, as the mirror makes it (conversation id = group id).
  standin.seed(group, [OWNER, CJK, MEMBER]);
});

test.after(async () => {
  for (const c of clients) await c.close().catch(() => {});
  for (const r of realtimes) r._close();
  await standin.stop();
});

test('login for itself, with ASCII, CJK and non-BMP ids', async () => {
  for (const id of [OWNER, CJK, NON_BMP, HALFWIDTH, MEMBER]) {
    const client = await login(id);
    assert.equal(client.id, id);
  }
  const logins = standin.accepted.filter((a) => a.op === 'login').map((a) => a.client);
  assert.deepEqual(logins.sort(), [OWNER, CJK, NON_BMP, HALFWIDTH, MEMBER].sort());
});

test('a stranger logging in as someone else gets no signature', async () => {
  await refused(() => newRealtime().createIMClient(OWNER, kit(STRANGER)), /login signature only for itself/);
  await refused(() => newRealtime().createIMClient(CJK, kit(STRANGER)), /login signature only for itself/);
});

test('create a conversation, members in the SDK order', async () => {
  const alice = clients.find((c) => c.id === OWNER);
  const conv = await alice.createConversation({ members: [HALFWIDTH, NON_BMP], name: 'chat' });
  const accepted = standin.accepted.find((a) => a.op === 'create');
  // JavaScript's order, which is not byte order: 𠮷 before ｹ.
  assert.deepEqual(accepted.members, [OWNER, NON_BMP, HALFWIDTH]);
  assert.equal(Buffer.compare(Buffer.from(NON_BMP), Buffer.from(HALFWIDTH)), 1, 'bytes order them the other way');
  assert.deepEqual(standin.members(conv.id), [OWNER, NON_BMP, HALFWIDTH]);
});

test('add: the group first, then the invite signature', async () => {
  const alice = clients.find((c) => c.id === OWNER);
  const conv = await alice.getConversation(group);
  await conv.add([HALFWIDTH, NON_BMP]);
  assert.deepEqual(await groupMembers(group), [OWNER, CJK, MEMBER, NON_BMP, HALFWIDTH].sort());
  assert.deepEqual(standin.members(group), [OWNER, CJK, MEMBER, NON_BMP, HALFWIDTH].sort());
});

test('a conversation linked to a group: the kit finds the group through the caller\'s groups', async () => {
  const linkedConv = '5f0000000000000000000abc';
  // A group created with a conversation of the vendor's (an objectId, not a group id):
  // the app's backend links it (and owns the group: a member like the others here).
  const created = await api('backend', 'POST', '/im/group', {
    group_name: 'linked',
    member_client_ids: [OWNER, MEMBER],
    conversation_id: linkedConv,
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const linked = String(created.body.group_id);
  standin.seed(linkedConv, ['backend', OWNER, MEMBER]);
  const alice = clients.find((c) => c.id === OWNER);
  await (await alice.getConversation(linkedConv)).add([CJK]);
  assert.deepEqual(await groupMembers(linked), ['backend', OWNER, MEMBER, CJK].sort());
  assert.deepEqual(standin.members(linkedConv), ['backend', OWNER, MEMBER, CJK].sort());
  // A member's quit() leaves the group too.
  const bob = clients.find((c) => c.id === MEMBER);
  await (await bob.getConversation(linkedConv)).quit();
  assert.deepEqual(await groupMembers(linked), ['backend', OWNER, CJK].sort());
  assert.deepEqual(standin.members(linkedConv), ['backend', OWNER, CJK].sort());
});

test('a plain member kicking is refused, with no signature', async () => {
  const bob = clients.find((c) => c.id === MEMBER);
  const conv = await bob.getConversation(group);
  await refused(() => conv.remove([CJK]), /owner or an admin/);
  assert.ok((await groupMembers(group)).includes(CJK), 'still in the group');
  assert.ok(standin.members(group).includes(CJK), 'still in the conversation');
});

test('remove by the owner: out of the group, then the kick signature', async () => {
  const alice = clients.find((c) => c.id === OWNER);
  const conv = await alice.getConversation(group);
  await conv.remove([HALFWIDTH]);
  assert.ok(!(await groupMembers(group)).includes(HALFWIDTH));
  assert.ok(!standin.members(group).includes(HALFWIDTH));
});

test('quit: a plain member leaves the group and the conversation', async () => {
  const client = clients.find((c) => c.id === NON_BMP);
  const conv = await client.getConversation(group);
  await conv.quit();
  assert.ok(!(await groupMembers(group)).includes(NON_BMP));
  assert.ok(!standin.members(group).includes(NON_BMP));
  const kick = standin.accepted.filter((a) => a.op === 'remove').pop();
  assert.deepEqual(kick, { ...kick, client: NON_BMP, members: [NON_BMP] });
});

test('join: a member is accepted, a stranger refused with no signature', async () => {
  const cjk = clients.find((c) => c.id === CJK);
  await (await cjk.getConversation(group)).join();
  const stranger = await login(STRANGER);
  const conv = await stranger.getConversation(group);
  await refused(() => conv.join(), /membership of the group/);
  assert.ok(!(await groupMembers(group)).includes(STRANGER));
  assert.ok(!standin.members(group).includes(STRANGER));
});

test('block and unblock: the owner yes, a plain member no', async () => {
  const alice = clients.find((c) => c.id === OWNER);
  const conv = await alice.getConversation(group);
  await conv.blockMembers([CJK]);
  await conv.unblockMembers([CJK]);
  const ops = standin.accepted.filter((a) => a.op === 'block' || a.op === 'unblock');
  assert.deepEqual(ops.map((a) => [a.op, a.members]), [['block', [CJK]], ['unblock', [CJK]]]);
  const bob = clients.find((c) => c.id === MEMBER);
  await refused(async () => (await bob.getConversation(group)).blockMembers([CJK]), /owner or an admin/);
});

test('the stand-in refuses a reused nonce, a stale timestamp and a wrong signature', async () => {
  // So that what it accepted above means something: the same checks, on purpose broken.
  const real = kit(MEMBER);
  let first = null;
  const replaying = { ...real, signatureFactory: async (id) => (first = first || (await real.signatureFactory(id))) };
  await login(MEMBER, MEMBER, replaying, newRealtime());
  await assert.rejects(login(MEMBER, MEMBER, replaying, newRealtime()), /SIGNATURE_FAILED: reused nonce/);
  const stale = { ...real, signatureFactory: async (id) => ({ ...(await real.signatureFactory(id)), timestamp: Math.floor(Date.now() / 1000) - 3600 }) };
  await assert.rejects(login(MEMBER, MEMBER, stale, newRealtime()), /SIGNATURE_FAILED: stale timestamp/);
  const forged = { ...real, signatureFactory: async (id) => ({ ...(await real.signatureFactory(id)), signature: '0'.repeat(40) }) };
  await assert.rejects(login(MEMBER, MEMBER, forged, newRealtime()), /SIGNATURE_FAILED: bad signature/);
  // Our answer as it is (a string timestamp) is what the SDK refuses; the kit converts it.
  const raw = { signatureFactory: async () => ({ signature: 'x', timestamp: '1700000000', nonce: 'n' }) };
  await assert.rejects(login(MEMBER, MEMBER, raw, newRealtime()), /malformed signature/);
});

test('a 503 is retried after its Retry-After, a bounded number of times', async () => {
  // A loopback front for the service that answers 503 (Retry-After: 0) to the first
  // `failures` requests, then passes requests through.
  let failures = 2;
  let seen = 0;
  const front = http.createServer(async (req, res) => {
    seen += 1;
    if (failures > 0) {
      failures -= 1;
      res.writeHead(503, { 'retry-after': '0', 'content-type': 'application/json' });
      res.end(JSON.stringify({ code: 1503, msg: 'storage unavailable', request: '' }));
      return;
    }
    const upstream = await fetch(baseUrl + req.url, { headers: { authorization: req.headers.authorization } });
    res.writeHead(upstream.status, { 'content-type': 'application/json' });
    res.end(await upstream.text());
  });
  await new Promise((resolve) => front.listen(0, '127.0.0.1', resolve));
  const frontUrl = `http://127.0.0.1:${front.address().port}`;
  try {
    const viaFront = (maxRetries) => signatureFactories({ baseUrl: frontUrl, appId, getToken: () => tokens[OWNER], maxRetries });
    const sig = await viaFront(3).signatureFactory(OWNER);
    assert.equal(typeof sig.timestamp, 'number');
    assert.equal(seen, 3, 'two 503s, then the answer');
    failures = 10;
    seen = 0;
    await assert.rejects(viaFront(2).signatureFactory(OWNER), /login failed with 503: storage unavailable/);
    assert.equal(seen, 3, 'the first try and two retries, no more');
  } finally {
    front.close();
  }
});

// Tencent's UserSig v2, decoded and checked as the vendor documents it (base64 with
// `*-_`, zlib, HMAC-SHA256 over the TLS fields), with Node's own zlib and crypto.
function checkUserSig(userSig, identifier) {
  const raw = Buffer.from(userSig.replace(/\*/g, '+').replace(/-/g, '/').replace(/_/g, '='), 'base64');
  const obj = JSON.parse(zlib.inflateSync(raw).toString('utf8'));
  const content = `TLS.identifier:${obj['TLS.identifier']}\nTLS.sdkappid:${tencentSdkAppId}\n` +
    `TLS.time:${obj['TLS.time']}\nTLS.expire:${obj['TLS.expire']}\n`;
  const sig = crypto.createHmac('sha256', tencentKey).update(content).digest('base64');
  assert.equal(obj['TLS.identifier'], identifier);
  assert.equal(Number(obj['TLS.sdkappid']), tencentSdkAppId);
  assert.equal(obj['TLS.sig'], sig);
}

test('getUserSig: for itself, checked independently; for another, refused', async () => {
  const mine = await getUserSig({ baseUrl, appId, getToken: () => tokens[OWNER] })(OWNER);
  assert.equal(mine.userID, OWNER);
  assert.equal(mine.sdkAppId, tencentSdkAppId);
  checkUserSig(mine.userSig, OWNER);
  await assert.rejects(
    getUserSig({ baseUrl, appId, getToken: () => tokens[STRANGER] })(OWNER),
    /usersig refused with 403: a client gets a UserSig only for itself/,
  );
  await assert.rejects(
    getUserSig({ baseUrl, appId, getToken: () => 'not-a-token' })(OWNER),
    /usersig refused with 401: the token was refused/,
  );
});
