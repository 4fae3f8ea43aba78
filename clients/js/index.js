'use strict';
// The glue between the IM vendor's SDK (leancloud-realtime 4.x) and this service: the SDK
// asks the app for signatures through three callbacks; these call our routes, apply a
// group change through the group route first (the signature routes only sign a change the
// table already holds: docs/protocol.md, "The SDK and the group"), and hand the SDK what it
// takes. No dependency beyond `fetch`.

// A conversation id that reads as a group id is that group's conversation (the service's
// rule, shared/src/model/policy.rs): one spelling, no leading zeros, below 2^53.
const GROUP_ID = /^[1-9][0-9]{0,15}$/;

function isGroupId(conversationId) {
  return GROUP_ID.test(conversationId) && Number(conversationId) <= Number.MAX_SAFE_INTEGER;
}

// The default `groupOf`: an id that reads as a group id is that group; any other
// conversation is a group's when one of the caller's groups is linked to it (the listing
// of the caller's groups names each one's `conversation_id`). A link found is kept for
// the factories' lifetime (links move rarely; a stale one makes the group route answer
// 404, which the SDK reports); a conversation of no group is looked up again next time.
function linkedGroups(call) {
  const found = new Map();
  return async function groupOf(conversationId, clientId) {
    if (isGroupId(conversationId)) return conversationId;
    if (found.has(conversationId)) return found.get(conversationId);
    let cursor = null;
    // At most 100 pages of 100: a client in more groups than that passes its own groupOf.
    for (let page = 0; page < 100; page += 1) {
      const query = { limit: '100' };
      if (cursor) query.cursor = cursor;
      const body = await call('list-user-groups', 'GET', ['im', 'user', clientId, 'groups'], undefined, query);
      for (const g of body.groups) {
        if (g.conversation_id != null) found.set(g.conversation_id, String(g.group_id));
      }
      if (found.has(conversationId)) return found.get(conversationId);
      cursor = body.next_cursor;
      if (!cursor) return null;
    }
    return null;
  };
}

// What each refusal means, for the message of the Error the SDK reports ("sign error: ...").
const RULES = {
  login: 'a client gets a login signature only for itself (and never for the app\'s system client)',
  create: 'a client opens conversations only for itself; one member naming a group\'s conversation takes membership',
  join: 'joining a group\'s conversation takes membership of the group (a non-member is refused)',
  add: 'invite: a member of the group, naming only ids the group already holds (the kit adds them through the group route first)',
  'add-members': 'adding members to a group: any member of the group, within its member limit',
  remove: 'kick: the group\'s owner or an admin, naming only ids no longer in the group, never the owner; a member may name only itself, once it has left',
  'remove-members': 'removing members from a group: the owner or an admin (never the owner); any member may remove itself',
  'conversation-block-clients': 'conversation-block: the group\'s owner or an admin; a list naming the owner only for the owner',
  'conversation-unblock-clients': 'conversation-unblock: the group\'s owner or an admin; a list naming the owner only for the owner',
  'client-block-conversations': 'a client blocks a conversation only for itself',
  'client-unblock-conversations': 'a client unblocks a conversation only for itself',
  usersig: 'a client gets a UserSig only for itself',
  'list-user-groups': 'a client lists only its own groups',
};

class RefusedError extends Error {
  constructor(action, status, body) {
    const why = status === 401
      ? 'the token was refused (missing, expired, or not of this app)'
      : status === 404
        ? 'no such app or group'
        : RULES[action] || action;
    const detail = body && body.msg ? ` (${body.msg})` : '';
    super(`${action} refused with ${status}: ${why}${detail}`);
    this.name = 'RefusedError';
    this.action = action;
    this.status = status;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Retry-After in seconds (or an HTTP date), bounded so that a wrong header cannot stall
// the SDK's own command timeout.
function retryDelay(header, maxMs) {
  if (header == null) return Math.min(1000, maxMs);
  const secs = Number(header);
  const ms = Number.isFinite(secs) ? secs * 1000 : Date.parse(header) - Date.now();
  return Math.max(0, Math.min(Number.isFinite(ms) ? ms : 1000, maxMs));
}

function makeCaller(options) {
  const { baseUrl, appId, getToken } = options;
  if (typeof baseUrl !== 'string' || !baseUrl) throw new TypeError('baseUrl must be a URL');
  if (typeof appId !== 'string' || !appId) throw new TypeError('appId must be a string');
  if (typeof getToken !== 'function') throw new TypeError('getToken must be a function');
  const doFetch = options.fetch || globalThis.fetch;
  if (typeof doFetch !== 'function') throw new TypeError('no fetch: pass options.fetch');
  const retries = options.maxRetries ?? 3;
  const maxDelayMs = options.maxRetryDelayMs ?? 5000;
  const base = baseUrl.replace(/\/+$/, '');

  // Every path segment percent-encoded: ids may hold spaces, `+`, CJK or characters
  // outside the BMP, which go as their UTF-8 bytes.
  const path = (...segments) => segments.map((s) => '/' + encodeURIComponent(String(s))).join('');

  return async function call(action, method, route, body, query) {
    const search = query ? `?${new URLSearchParams(query)}` : '';
    for (let attempt = 0; ; attempt += 1) {
      const token = await getToken();
      const headers = { accept: 'application/json', authorization: `Bearer ${token}` };
      if (body !== undefined) headers['content-type'] = 'application/json';
      const res = await doFetch(base + path(...route) + search, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      if (res.status === 503 && attempt < retries) {
        await res.text().catch(() => {});
        await sleep(retryDelay(res.headers.get('retry-after'), maxDelayMs));
        continue;
      }
      const text = await res.text();
      let json = null;
      try {
        json = text ? JSON.parse(text) : null;
      } catch (_) {
        json = null;
      }
      if (res.ok) return json;
      if (res.status === 401 || res.status === 403 || res.status === 404) {
        throw new RefusedError(action, res.status, json);
      }
      throw new Error(`${action} failed with ${res.status}${json && json.msg ? `: ${json.msg}` : ''}`);
    }
  };
}

// The SDK's order (what it signs over and sends): JavaScript's default sort, by UTF-16
// code units, duplicates removed. The service signs in the same order; a different list
// back means the signature would fail at the vendor, so it is an error here.
function sdkOrder(ids) {
  return [...new Set(ids)].sort();
}

function toSdk(action, body, ids) {
  if (ids && body.sorted_member_ids !== sdkOrder(ids).join(':')) {
    throw new Error(`${action}: the service signed members ${JSON.stringify(body.sorted_member_ids)}, the SDK sends ${JSON.stringify(sdkOrder(ids).join(':'))}`);
  }
  // The SDK takes a number (it refuses the string our API answers: "malformed signature").
  const timestamp = Number(body.timestamp);
  if (!Number.isSafeInteger(timestamp)) throw new Error(`${action}: bad timestamp ${body.timestamp}`);
  return { signature: body.signature, timestamp, nonce: body.nonce };
}

function signatureFactories(options) {
  const call = makeCaller(options);
  const { appId } = options;
  const groupOf = options.groupOf || linkedGroups(call);

  async function signatureFactory(clientId) {
    const body = await call('login', 'GET', ['signature', 'login', appId, clientId]);
    return toSdk('login', body);
  }

  async function conversationSignatureFactory(conversationId, clientId, ids, action) {
    const members = ids || [];
    if (action === 'create') {
      // The SDK lists the creator among the members.
      const body = await call('create', 'GET', ['signature', 'conversation', appId, clientId, sdkOrder(members).join(':')]);
      return toSdk('create', body, members);
    }
    if (action !== 'add' && action !== 'remove') throw new Error(`unknown conversation action ${action}`);
    const group = conversationId == null ? null : await groupOf(conversationId, clientId);
    const joined = sdkOrder(members).join(':');
    const isSelf = members.length === 1 && members[0] === clientId;
    if (action === 'add') {
      // join() is add(self): a change of nobody's membership, so no group call: the
      // signature route takes it as our join, for members only.
      if (group != null && !isSelf) {
        await call('add-members', 'POST', ['im', 'group', group, 'member'], { member_client_ids: sdkOrder(members) });
      }
      const body = await call(isSelf ? 'join' : 'add', 'GET', ['signature', 'invite', appId, clientId, conversationId, joined]);
      return toSdk('add', body, members);
    }
    // remove, and quit() (remove(self)): out of the group first, then the kick signature,
    // which is given only once the table no longer holds them.
    if (group != null) {
      await call('remove-members', 'DELETE', ['im', 'group', group, 'member'], { member_client_ids: sdkOrder(members) });
    }
    const body = await call('remove', 'GET', ['signature', 'kick', appId, clientId, conversationId, joined]);
    return toSdk('remove', body, members);
  }

  async function blacklistSignatureFactory(clientId, conversationId, ids, action) {
    const members = ids || [];
    switch (action) {
      case 'conversation-block-clients':
      case 'conversation-unblock-clients': {
        const route = action === 'conversation-block-clients' ? 'conversation-block' : 'conversation-unblock';
        const body = await call(action, 'GET', ['signature', route, appId, clientId, conversationId, sdkOrder(members).join(':')]);
        return toSdk(action, body, members);
      }
      case 'client-block-conversations':
      case 'client-unblock-conversations': {
        // The client acts on itself; the SDK passes the conversations as `ids`, and our
        // message names one conversation.
        const convs = conversationId != null ? [conversationId] : members;
        if (convs.length !== 1) throw new Error(`${action}: one conversation at a time`);
        const route = action === 'client-block-conversations' ? 'block' : 'unblock';
        const body = await call(action, 'GET', ['signature', route, appId, clientId, convs[0]]);
        return toSdk(action, body);
      }
      default:
        throw new Error(`unknown blacklist action ${action}`);
    }
  }

  return { signatureFactory, conversationSignatureFactory, blacklistSignatureFactory };
}

// Tencent Cloud IM's login credential: `login({ userID, userSig })` with what this answers.
function getUserSig(options) {
  const call = makeCaller(options);
  return async function userSig(clientId) {
    const body = await call('usersig', 'GET', ['signature', 'usersig', options.appId, clientId]);
    return { userID: body.client_id, userSig: body.user_sig, sdkAppId: body.sdk_app_id, expiresAt: body.expires_at };
  };
}

module.exports = { signatureFactories, getUserSig, RefusedError, sdkOrder };
