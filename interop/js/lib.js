'use strict';
// Shared helpers for the JS SDK interop scenarios. The SDK (npm realtime-pubsub-client@1.0.0)
// and the token library (npm jsonwebtoken) are used exactly as installed by
// scripts/install-sdks.sh into .build/npm — nothing here patches or wraps their internals.
//
// Environment (set by scripts/suites/sdk-interop.sh):
//   RINGCAST_ADDR  host:port of the running broker
//   INTEROP_DIR    directory written by interop/make-config.sh (keys/, secrets.json)
const fs = require('fs');
const path = require('path');
const http = require('http');
const crypto = require('crypto');
const assert = require('assert');

const NPM = path.resolve(__dirname, '../../.build/npm/node_modules');
const { RealtimeClient } = require(path.join(NPM, 'realtime-pubsub-client'));
const jwt = require(path.join(NPM, 'jsonwebtoken'));

if (typeof WebSocket === 'undefined') {
  console.error('no global WebSocket: run Node 20 with --experimental-websocket');
  process.exit(3);
}

const ADDR = process.env.RINGCAST_ADDR;
const DIR = process.env.INTEROP_DIR;
if (!ADDR || !DIR) {
  console.error('RINGCAST_ADDR and INTEROP_DIR must be set');
  process.exit(3);
}
const SECRETS = JSON.parse(fs.readFileSync(path.join(DIR, 'secrets.json'), 'utf8'));
const key = (name) => fs.readFileSync(path.join(DIR, 'keys', name + '.pem'), 'utf8');

const MAIN_APP = 'interop-main';
const PUBLISH_ALL = 'realtime:publisher:write:topic:*';
const PUBLISH_PRIV = 'realtime:publisher:write:topic:priv/*';
const READ_INBOUND = 'realtime:subscriber:read:topic:secure/inbound';

// ---- results -------------------------------------------------------------------------
let failures = 0;
function result(id, ok, detail) {
  if (ok === null) {
    console.log(`RESULT|${id}|SKIP|${detail || ''}`);
    return;
  }
  if (!ok) failures++;
  console.log(`RESULT|${id}|${ok ? 'PASS' : 'FAIL'}|${(detail || '').replace(/\s+/g, ' ')}`);
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timeout after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

// Runs one scenario with a hard time bound; any throw is a FAIL with the message.
async function scenario(id, fn, ms = 10000) {
  try {
    const detail = await withTimeout(Promise.resolve().then(fn), ms, id);
    result(id, true, detail);
  } catch (error) {
    result(id, false, error && error.stack ? error.stack.split('\n').slice(0, 2).join(' | ') : String(error));
  }
}

// ---- tokens (npm jsonwebtoken) -------------------------------------------------------
const now = () => Math.floor(Date.now() / 1000);
function clientToken(sub, permissions, { alg = 'HS256', signingKey = SECRETS.secret, exp } = {}) {
  const claims = { sub, permissions, exp: exp === undefined ? now() + 600 : exp };
  return jwt.sign(claims, signingKey, { algorithm: alg });
}
function adminToken(permissions = [PUBLISH_ALL]) {
  return jwt.sign({ sub: 'backend', permissions, exp: now() + 600 }, SECRETS.admin, { algorithm: 'HS256' });
}

// ---- SDK clients ---------------------------------------------------------------------
const clients = new Set();

// The one-line hook that points the unmodified SDK at ringcast: websocketOptions.urlProvider.
function makeClient(app, token, extra = {}) {
  const client = new RealtimeClient({
    websocketOptions: {
      urlProvider: async () => `ws://${ADDR}/apps/${app}?access_token=${token}`,
      // reconnecting-websocket options: bounded retries and short delays keep the run bounded.
      maxRetries: 3,
      minReconnectionDelay: 200,
      maxReconnectionDelay: 1000,
      connectionTimeout: 4000,
      ...extra,
    },
  });
  client.errors = [];
  // eventemitter2 throws on an unhandled 'error' event: the SDK surfaces failures this way.
  client.on('error', (error) => client.errors.push(error));
  clients.add(client);
  return client;
}

async function connect(app, token, extra) {
  const client = makeClient(app, token, extra);
  const started = client.waitFor('session.started', { timeout: 5000 });
  await client.connect();
  const [info] = await started;
  client.info = info;
  return client;
}

function disconnect(client) {
  try {
    client.disconnect();
  } catch (_) {
    /* already gone */
  }
  clients.delete(client);
}

// Resolves with the first (message, reply) of `event` passing `filter`.
function waitEvent(client, event, filter = () => true, ms = 5000) {
  return client.waitFor(event, { timeout: ms, filter }).then((args) => args[0]);
}

// Proves the broker processed everything this connection sent before (one connection's
// frames are handled in order): publish a marker to the connection's own private topic and
// wait for both its delivery and its ack.
async function sync(client) {
  const own = `priv/${client.info.id}`;
  const marker = 'sync-' + crypto.randomBytes(6).toString('hex');
  const seen = waitEvent(client, `${own}.sync`, (m) => m.data.payload === marker);
  await client.publish(own, marker, { messageType: 'sync', id: marker }).waitForAck(5000);
  await seen;
}

// Raw RFC 6455 upgrade request: resolves with the HTTP status (101 when upgraded).
function rawUpgradeStatus(app, token) {
  return new Promise((resolve, reject) => {
    const [host, port] = ADDR.split(':');
    const req = http.request({
      host,
      port,
      path: `/apps/${app}?access_token=${token}`,
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': crypto.randomBytes(16).toString('base64'),
      },
      timeout: 4000,
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve(101);
    });
    req.on('response', (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('timeout', () => req.destroy(new Error('raw upgrade timed out')));
    req.on('error', reject);
    req.end();
  });
}

async function httpPublish(body, token = adminToken()) {
  const res = await fetch(`http://${ADDR}/api/topics/${MAIN_APP}/publish`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(4000),
  });
  return { status: res.status, body: await res.text() };
}

function closeAll() {
  for (const client of clients) disconnect(client);
}

module.exports = {
  ADDR, DIR, SECRETS, MAIN_APP, PUBLISH_ALL, PUBLISH_PRIV, READ_INBOUND,
  assert, crypto, jwt, key, now, result, scenario, withTimeout, failures: () => failures,
  clientToken, adminToken, makeClient, connect, disconnect, waitEvent, sync,
  rawUpgradeStatus, httpPublish, closeAll,
};
