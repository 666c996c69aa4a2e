'use strict';
// Scenarios 1–8 and the token matrix for the JavaScript SDK (npm realtime-pubsub-client@1.0.0).
// Run: RINGCAST_ADDR=127.0.0.1:PORT INTEROP_DIR=DIR node --experimental-websocket interop/js/scenarios.js
// Prints one `RESULT|<id>|PASS|FAIL|SKIP|<detail>` line per scenario (see interop/report.py).
const L = require('./lib');
const { assert, MAIN_APP, PUBLISH_ALL, PUBLISH_PRIV, READ_INBOUND } = L;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const TOPIC = 'js-chat';

async function main() {
  // ---- 1. connect / session.started ----------------------------------------------------
  let pub, sub, server;
  await L.scenario('1', async () => {
    const client = await L.connect(MAIN_APP, L.clientToken('js-session', []));
    const info = client.info;
    assert.match(info.id, /^[0-9a-f]{12}$/, `id ${info.id}`);
    assert.strictEqual(info.appId, MAIN_APP);
    assert.strictEqual(info.remoteAddress, '127.0.0.1');
    L.disconnect(client);
    return `id=${info.id} appId=${info.appId} remoteAddress=${info.remoteAddress}`;
  });

  // An idle client for scenario 10 (keepalive), checked at the end of the run.
  const idle = L.connect(MAIN_APP, L.clientToken('js-idle', [PUBLISH_PRIV])).then((client) => {
    client.openedAt = Date.now();
    client.closes = [];
    client.on('close', (event) => client.closes.push(event));
    return client;
  });
  idle.catch(() => {});

  // Shared clients for 2–8: a publisher, a subscriber and an RPC "server".
  const setup = (async () => {
    pub = await L.connect(MAIN_APP, L.clientToken('js-publisher', [PUBLISH_ALL]));
    sub = await L.connect(MAIN_APP, L.clientToken('js-subscriber', [PUBLISH_PRIV]));
    server = await L.connect(MAIN_APP, L.clientToken('js-backend', [PUBLISH_PRIV, READ_INBOUND]));
    sub.subscribeRemoteTopic(TOPIC);
    await L.sync(sub); // the subscription is in place before anyone publishes
    server.on('secure/inbound.gettime', (message, reply) => {
      reply({ time: 1712000000000, echo: message.data.payload, by: 'js-backend' }, 'ok');
    });
    server.presence = [];
    server.on('secure/inbound.presence', (message) => server.presence.push(message.data));
    server.subscribeRemoteTopic('secure/inbound');
    await L.sync(server);
  })();
  setup.catch(() => {});
  const ready = () => L.withTimeout(setup, 10000, 'setup of publisher/subscriber/backend clients');

  // ---- 2. publish → on('<topic>.<messageType>') with the payload intact ------------------
  const payloads = {
    string: 'Hello, ringcast!',
    object: { a: 1, b: 'two', c: true, d: null, e: 1.5 },
    nested: { l1: { l2: { l3: { arr: [1, [2, [3, { deep: 'yes' }]]], empty: {}, none: [] } } }, n: -0.0125 },
    unicode: 'Ünïcödé ✓ 日本語 🚀 "quoted" \\ back\nslash\u0001 ẞ',
    empty: '',
  };
  for (const [kind, payload] of Object.entries(payloads)) {
    await L.scenario(`2.${kind}`, async () => {
      await ready();
      const id = `js-${kind}-${L.crypto.randomBytes(4).toString('hex')}`;
      const type = `payload-${kind}`;
      const got = L.waitEvent(sub, `${TOPIC}.${type}`, (m) => m.data.id === id);
      pub.publish(TOPIC, payload, { messageType: type, id });
      const message = await got;
      assert.strictEqual(message.topic, TOPIC);
      assert.strictEqual(message.messageType, type);
      assert.deepStrictEqual(message.data.payload, payload);
      assert.strictEqual(message.data.client.connectionId, pub.info.id);
      assert.strictEqual(message.data.client.subject, 'js-publisher');
      assert.strictEqual(message.compression, false, 'text frame expected');
      return `received ${JSON.stringify(payload).slice(0, 40)} on '${TOPIC}.${type}'`;
    });
  }

  // ---- 3. waitForAck for publish and send -------------------------------------------------
  await L.scenario('3.publish', async () => {
    await ready();
    await pub.publish(TOPIC, 'ack me', { messageType: 'ack-test' }).waitForAck(5000);
    return 'publish(...).waitForAck() resolved';
  });
  await L.scenario('3.send', async () => {
    await ready();
    await pub.send({ hello: 'backend' }, { messageType: 'ack-test' }).waitForAck(5000);
    return 'send(...).waitForAck() resolved';
  });

  // ---- 4. RPC: send → backend reply() → waitForReply ----------------------------------------
  await L.scenario('4', async () => {
    await ready();
    const requester = await L.connect(MAIN_APP, L.clientToken('js-requester', []));
    const [response] = await requester
      .send({ question: 'what time is it?', n: [1, 2] }, { messageType: 'gettime' })
      .waitForReply(5000);
    L.disconnect(requester);
    assert.strictEqual(response.status, 'ok');
    assert.deepStrictEqual(response.data, {
      time: 1712000000000,
      echo: { question: 'what time is it?', n: [1, 2] },
      by: 'js-backend',
    });
    return `waitForReply resolved with ${JSON.stringify(response.data).slice(0, 50)}`;
  });

  // ---- 5. compress: true → binary frame ---------------------------------------------------------
  await L.scenario('5', async () => {
    await ready();
    const id = 'js-zip-' + L.crypto.randomBytes(4).toString('hex');
    const payload = { text: 'ü'.repeat(3000), list: [1, 2, 3] };
    const got = L.waitEvent(sub, `${TOPIC}.zipped`, (m) => m.data.id === id);
    await pub.publish(TOPIC, payload, { messageType: 'zipped', compress: true, id }).waitForAck(5000);
    const message = await got;
    assert.strictEqual(message.compression, true, 'expected a binary frame (compression === true)');
    assert.deepStrictEqual(message.data.payload, payload);
    return 'binary frame, compression === true, payload parsed intact';
  });

  await L.scenario('5.http', async () => {
    await ready();
    const message = { zipped: 'ü'.repeat(2000), via: 'http' };
    const got = L.waitEvent(sub, `${TOPIC}.http-zipped`, (m) => m.data && m.data.via === 'http');
    const res = await L.httpPublish({ topic: TOPIC, message, messageType: 'http-zipped', compress: true });
    assert.strictEqual(res.status, 200, `HTTP ${res.status} ${res.body}`);
    const received = await got;
    assert.strictEqual(received.compression, true, 'expected a binary frame (compression === true)');
    assert.deepStrictEqual(received.data, message);
    return 'HTTP publish with compress: true → binary frame, parsed intact';
  });

  // ---- 6. forbidden secure subscribe → close 1008 with the exact reason ---------------------
  await L.scenario('6', async () => {
    const client = await L.connect(MAIN_APP, L.clientToken('js-nosecure', [PUBLISH_PRIV]));
    const closed = L.waitEvent(client, 'close', () => true, 5000);
    client.subscribeRemoteTopic('secure/x');
    const event = await closed;
    L.disconnect(client); // stop reconnecting-websocket from reconnecting
    assert.strictEqual(event.code, 1008);
    assert.strictEqual(event.reason, 'Subscription to secure topic is forbidden!');
    return `'close' event: ${event.code} "${event.reason}"`;
  });

  // ---- 7. HTTP publish (admin token) reaches the SDK subscriber -------------------------------
  await L.scenario('7', async () => {
    await ready();
    const message = { msg: 'Hello subscribers from HTTP', time: 1712000000000, nested: { 'ü': ['✓', 2] } };
    const got = L.waitEvent(sub, `${TOPIC}.greeting`, (m) => m.data && m.data.msg === message.msg);
    const res = await L.httpPublish({ topic: TOPIC, message, messageType: 'greeting' });
    assert.strictEqual(res.status, 200, `HTTP ${res.status} ${res.body}`);
    const received = await got;
    assert.deepStrictEqual(received.data, message);
    return `fetch POST → ${res.status} ${res.body}; subscriber got data intact`;
  });

  // ---- 8. presence on secure/inbound -------------------------------------------------------------
  await L.scenario('8', async () => {
    await ready();
    const find = (status, id) => server.presence.find((d) => d.client.connectionId === id && d.payload.status === status);
    const until = async (cond, what) => {
      for (let i = 0; i < 100 && !cond(); i++) await sleep(50);
      if (!cond()) throw new Error(`no presence ${what}`);
    };
    const visitor = await L.connect(MAIN_APP, L.clientToken('js-visitor', []));
    const id = visitor.info.id;
    await until(() => find('connected', id), 'connected');
    L.disconnect(visitor);
    await until(() => find('disconnected', id), 'disconnected');
    const c = find('connected', id);
    const d = find('disconnected', id);
    assert.deepStrictEqual(c.payload, { code: 0, status: 'connected' });
    assert.deepStrictEqual(d.payload, { code: -1, status: 'disconnected' });
    assert.strictEqual(c.client.subject, 'js-visitor');
    return `connected {code:0} and disconnected {code:-1} for ${id}`;
  });

  // ---- 10. keepalive: the server pings every 2 s (config) and cuts connections silent for 2
  // intervals; an idle SDK connection must stay open on its automatic pong replies alone.
  const KEEPALIVE_MS = 7000;
  const checkKeepalive = async () => {
    const client = await idle;
    const left = KEEPALIVE_MS - (Date.now() - client.openedAt);
    if (left > 0) await sleep(left);
    assert.deepStrictEqual(client.closes.map((e) => `${e.code} ${e.reason}`), [], 'idle connection was closed');
    await L.sync(client);
    return `idle for ${Date.now() - client.openedAt} ms (pings every 2 s), still open and working`;
  };

  // ---- token matrix: accepted ------------------------------------------------------------------
  const accepted = [
    ['HS256', MAIN_APP, L.SECRETS.secret], ['HS384', MAIN_APP, L.SECRETS.secret], ['HS512', MAIN_APP, L.SECRETS.secret],
    ['RS256', 'interop-rsa', L.key('rsa')], ['RS384', 'interop-rsa', L.key('rsa')], ['RS512', 'interop-rsa', L.key('rsa')],
    ['PS256', 'interop-rsa', L.key('rsa')], ['PS384', 'interop-rsa', L.key('rsa')], ['PS512', 'interop-rsa', L.key('rsa')],
    ['ES256', 'interop-es256', L.key('ec256')], ['ES384', 'interop-es384', L.key('ec384')], ['ES512', 'interop-es512', L.key('ec521')],
  ];
  for (const [alg, app, signingKey] of accepted) {
    await L.scenario(`T.${alg}`, async () => {
      const token = L.clientToken(`js-${alg}`, [], { alg, signingKey });
      const header = JSON.parse(Buffer.from(token.split('.')[0], 'base64url'));
      assert.strictEqual(header.alg, alg);
      const client = await L.connect(app, token);
      L.disconnect(client);
      assert.strictEqual(client.info.appId, app);
      return `session.started on ${app}`;
    });
  }
  L.result('T.EdDSA', null, 'npm jsonwebtoken@9 cannot sign EdDSA (not in its algorithm list)');

  // ---- token matrix: refused (raw upgrade → 401, and the SDK reports a failed connect) ----------
  async function refused(app, token) {
    const status = await L.rawUpgradeStatus(app, token);
    const client = L.makeClient(app, token, { maxRetries: 0 });
    let started = false;
    client.on('session.started', () => (started = true));
    const failed = L.waitEvent(client, 'error', () => true, 5000);
    await client.connect();
    const error = await failed;
    await sleep(200);
    L.disconnect(client);
    assert.strictEqual(status, 401, `raw upgrade answered ${status}`);
    assert.ok(!started, 'session.started was emitted');
    return `${app}: HTTP ${status}; SDK 'error' (${error.message})`;
  }
  const tok = L.clientToken;
  await L.scenario('N.expired', () =>
    refused(MAIN_APP, tok('js-expired', [], { exp: L.now() - 300 })));
  await L.scenario('N.wrong-key', async () => {
    const out = [];
    out.push(await refused(MAIN_APP, tok('js-wk', [], { signingKey: 'not-the-secret-but-just-as-long-as-one' })));
    out.push(await refused('interop-rsa', tok('js-wk', [], { alg: 'RS256', signingKey: L.key('rsa_other') })));
    out.push(await refused('interop-es256', tok('js-wk', [], { alg: 'ES256', signingKey: L.key('ec256_other') })));
    return out.join('; ');
  });
  await L.scenario('N.wrong-alg', async () => {
    const out = [];
    // right secret, but HS512 is not in the app's allow-list ["HS256"]
    out.push(await refused('interop-hs256only', tok('js-wa', [], { alg: 'HS512' })));
    // right RSA key, but an ES app
    out.push(await refused('interop-es256', tok('js-wa', [], { alg: 'RS256', signingKey: L.key('rsa') })));
    return out.join('; ');
  });
  await L.scenario('N.alg-confusion', () =>
    // HS256 whose HMAC secret is the app's RSA public PEM (algorithm-confusion attack)
    refused('interop-rsa', tok('js-confused', [], { alg: 'HS256', signingKey: L.key('rsa.pub') })));
  await L.scenario('N.none', () =>
    refused(MAIN_APP, L.jwt.sign({ sub: 'js-none', exp: L.now() + 600 }, null, { algorithm: 'none' })));

  await L.scenario('10', checkKeepalive, 15000);

  // ---- 11. permessage-deflate (PROTOCOL.md §3: negotiated when the client offers it; Node's
  // WebSocket offers `permessage-deflate; client_max_window_bits`) --------------------------
  await L.scenario('11', async () => {
    await ready();
    const extensions = pub.ws.extensions; // reconnecting-websocket forwards WebSocket.extensions
    assert.match(extensions, /permessage-deflate/,
      `offered permessage-deflate, the broker's 101 accepted no extension (extensions='${extensions}')`);
    return `negotiated: ${extensions}`;
  });
}

const hardStop = setTimeout(() => {
  console.error('js scenarios: hard timeout, exiting');
  process.exit(2);
}, 55000);

main()
  .catch((error) => console.error('js scenarios crashed:', error))
  .finally(async () => {
    L.closeAll();
    await sleep(200);
    clearTimeout(hardStop);
    process.exit(0);
  });
