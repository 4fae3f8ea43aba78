'use strict';
// A stand-in of the vendor's realtime server, written from the protocol the SDK ships
// (proto/message.proto, package push_server.messages2; WebSocket subprotocol
// lc.protobuf2.3). It answers what the SDK sends for login, create, query, add, remove,
// block, unblock and echo, and like the vendor's cloud it checks every signature: HMAC-SHA1
// with the app's master key over the message it rebuilds itself (docs/protocol.md), the
// member list in the order JavaScript sorts it, a timestamp that is a number and current,
// and a nonce never seen before. It records what it accepted and what it refused.

const crypto = require('node:crypto');
const path = require('node:path');

function load(sdkModules) {
  const ProtoBuf = require(path.join(sdkModules, 'protobufjs'));
  const { WebSocketServer, Server } = require(path.join(sdkModules, 'ws'));
  const proto = path.join(sdkModules, 'leancloud-realtime', 'proto', 'message.proto');
  const builder = ProtoBuf.loadProtoFile(proto);
  const messages = builder.build('push_server.messages2');
  return { messages, WSServer: WebSocketServer || Server };
}

const MAX_SKEW_SECS = 300;

class StandIn {
  constructor({ sdkModules, appId, masterKey }) {
    const { messages, WSServer } = load(sdkModules);
    this.m = messages;
    this.WSServer = WSServer;
    this.appId = appId;
    this.masterKey = masterKey;
    this.nonces = new Set();
    this.accepted = [];
    this.refused = [];
    this.conversations = new Map();
    this.next = 1;
  }

  start() {
    return new Promise((resolve) => {
      this.wss = new this.WSServer({
        host: '127.0.0.1',
        port: 0,
        handleProtocols: (protocols) => {
          const list = Array.isArray(protocols) ? protocols : [...protocols];
          return list.includes('lc.protobuf2.3') ? 'lc.protobuf2.3' : false;
        },
      }, () => resolve(`ws://127.0.0.1:${this.wss.address().port}`));
      this.wss.on('connection', (ws) => this.serve(ws));
    });
  }

  stop() {
    for (const c of this.wss.clients) c.terminate();
    return new Promise((resolve) => this.wss.close(resolve));
  }

  /** A conversation as the mirror would have made it for a group. */
  seed(cid, members) {
    this.conversations.set(cid, { members: new Set(members), blocked: new Set(), creator: members[0] });
  }

  members(cid) {
    const c = this.conversations.get(cid);
    return c ? [...c.members].sort() : null;
  }

  // The vendor's check: the signature over the message it rebuilds, a numeric current
  // timestamp, a fresh nonce.
  verify(what, fields, sig) {
    const { t, n, s } = sig;
    const fail = (reason) => {
      this.refused.push({ ...what, reason });
      return reason;
    };
    if (s == null || t == null || n == null) return fail('no signature');
    const ts = typeof t === 'number' ? t : t.toNumber();
    const now = Math.floor(Date.now() / 1000);
    if (!Number.isSafeInteger(ts) || Math.abs(now - ts) > MAX_SKEW_SECS) return fail(`stale timestamp ${ts}`);
    if (this.nonces.has(n)) return fail(`reused nonce ${n}`);
    const message = fields.map((f) => f.replace('{t}', String(ts)).replace('{n}', n)).join(':');
    const expected = crypto.createHmac('sha1', this.masterKey).update(message, 'utf8').digest('hex');
    if (expected !== s) return fail(`bad signature over ${message}`);
    this.nonces.add(n);
    this.accepted.push({ ...what, message });
    return null;
  }

  // One connection carries the sessions of every client of a Realtime: each command
  // names its client (peerId), which must have opened its session on this connection.
  serve(ws) {
    const session = { peers: new Set() };
    ws.on('message', (data) => {
      let cmd;
      try {
        cmd = this.m.GenericCommand.decode(data);
      } catch (e) {
        ws.close(1002, 'undecodable');
        return;
      }
      const reply = this.handle(session, cmd);
      if (reply) {
        reply.i = cmd.i;
        ws.send(reply.toBuffer());
      }
    });
  }

  error(code, reason) {
    return new this.m.GenericCommand({ cmd: 'error', errorMessage: { code, reason } });
  }

  handle(session, cmd) {
    const { CommandType, OpType } = this.m;
    const name = (e, v) => Object.keys(e).find((k) => e[k] === v);
    const type = name(CommandType, cmd.cmd);
    const op = name(OpType, cmd.op);
    const G = (o) => new this.m.GenericCommand(o);
    const app = this.appId;
    if (type === 'echo') return G({ cmd: 'echo' });
    if (type === 'session' && op === 'open') {
      if (cmd.appId !== app) return this.error(4103, 'APP_NOT_AVAILABLE');
      const peer = cmd.peerId;
      const sm = cmd.sessionMessage;
      const bad = this.verify({ op: 'login', client: peer }, [app, peer, '', '{t}', '{n}'], sm);
      if (bad) return this.error(4102, `SIGNATURE_FAILED: ${bad}`);
      session.peers.add(peer);
      return G({ cmd: 'session', op: 'opened', peerId: peer, sessionMessage: {} });
    }
    const peer = cmd.peerId;
    if (!session.peers.has(peer)) return this.error(4101, 'SESSION_REQUIRED');
    if (type === 'session' && op === 'close') {
      session.peers.delete(peer);
      return G({ cmd: 'session', op: 'closed', peerId: peer });
    }
    if (type === 'conv') {
      const c = cmd.convMessage;
      if (op === 'start') {
        const members = [...c.m].sort();
        const bad = this.verify({ op: 'create', client: peer, members }, [app, peer, members.join(':'), '{t}', '{n}'], c);
        if (bad) return this.error(4102, `SIGNATURE_FAILED: ${bad}`);
        const cid = `conv-${this.next++}`;
        this.seed(cid, members);
        return G({ cmd: 'conv', op: 'started', convMessage: { cid, cdate: new Date().toISOString() } });
      }
      if (op === 'query') {
        const where = JSON.parse(c.where.data);
        const ids = typeof where.objectId === 'string' ? [where.objectId] : (where.objectId && where.objectId.$in) || [];
        const results = ids.filter((id) => this.conversations.has(id)).map((id) => {
          const conv = this.conversations.get(id);
          return { objectId: id, m: [...conv.members], c: conv.creator, name: id };
        });
        return G({ cmd: 'conv', op: 'results', convMessage: { results: { data: JSON.stringify(results) } } });
      }
      if (op === 'add' || op === 'remove') {
        const conv = this.conversations.get(c.cid);
        if (!conv) return this.error(4401, 'CONVERSATION_NOT_FOUND');
        const members = [...c.m].sort();
        const action = op === 'add' ? 'invite' : 'kick';
        const bad = this.verify({ op, client: peer, cid: c.cid, members }, [app, peer, c.cid, members.join(':'), '{t}', '{n}', action], c);
        if (bad) return this.error(4102, `SIGNATURE_FAILED: ${bad}`);
        for (const id of members) (op === 'add' ? conv.members.add(id) : conv.members.delete(id));
        return G({ cmd: 'conv', op: op === 'add' ? 'added' : 'removed', convMessage: { cid: c.cid, allowedPids: members } });
      }
    }
    if (type === 'blacklist' && (op === 'block' || op === 'unblock')) {
      const b = cmd.blacklistMessage;
      const conv = this.conversations.get(b.srcCid);
      if (!conv) return this.error(4401, 'CONVERSATION_NOT_FOUND');
      const members = [...b.toPids].sort();
      const action = op === 'block' ? 'conversation-block-clients' : 'conversation-unblock-clients';
      const bad = this.verify({ op, client: peer, cid: b.srcCid, members }, [app, peer, b.srcCid, members.join(':'), '{t}', '{n}', action], b);
      if (bad) return this.error(4102, `SIGNATURE_FAILED: ${bad}`);
      for (const id of members) (op === 'block' ? conv.blocked.add(id) : conv.blocked.delete(id));
      return G({ cmd: 'blacklist', op: op === 'block' ? 'blocked' : 'unblocked', blacklistMessage: { srcCid: b.srcCid, allowedPids: members } });
    }
    return this.error(4300, `not in the stand-in: ${type} ${op}`);
  }
}

module.exports = { StandIn };
