'use strict';
// Scenario 9, JavaScript side: run concurrently with interop/py/cross.py against the same broker.
// Coordination goes through the broker only (bounded, no files):
//   1. subscribe to cross/js and secure/inbound, confirm with a round trip (sync);
//   2. publish a `hello` to cross/py every 200 ms until Python answers `got` (its subscription
//      exists once it answers), and answer every `hello` from Python with `got`;
//   3. RPC: send `ask-py` on secure/inbound, Python's client answers with reply(); waitForReply;
//   4. publish `done` to cross/py and stay connected (answering Python's `ask-js`) until
//      Python's `done` arrives.
// Results: 9.receive (JS received Python's publication intact), 9.rpc (Python answered JS).
const L = require('./lib');
const { assert, MAIN_APP, PUBLISH_ALL, READ_INBOUND } = L;

const ME = 'js';
const OTHER = 'py';
const hello = (from) => ({ from, text: 'ünïcode ✓ 日本語 🚀', nested: { list: [1, 2, { k: 'v' }], empty: '' } });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const until = async (cond, ms) => {
  for (let waited = 0; waited < ms && !cond(); waited += 50) await sleep(50);
  return cond();
};

async function main() {
  let client;
  let helloFrom = null;
  let gotAck = false;
  let otherDone = false;

  await L.scenario('9.receive', async () => {
    client = await L.connect(MAIN_APP, L.clientToken(`cross-${ME}`, [PUBLISH_ALL, READ_INBOUND]));
    client.on(`cross/${ME}.hello`, (message) => {
      if (!helloFrom) helloFrom = message;
      client.publish(`cross/${OTHER}`, { re: message.data.id }, { messageType: 'got' });
    });
    client.on(`cross/${ME}.got`, () => (gotAck = true));
    client.on(`cross/${ME}.done`, () => (otherDone = true));
    client.on(`secure/inbound.ask-${ME}`, (message, reply) => {
      reply({ answer: `from ${ME}`, echo: message.data.payload }, 'ok');
    });
    client.subscribeRemoteTopic(`cross/${ME}`);
    client.subscribeRemoteTopic('secure/inbound');
    await L.sync(client);
    for (let i = 0; i < 75 && !(gotAck && helloFrom); i++) {
      if (!gotAck) client.publish(`cross/${OTHER}`, hello(ME), { messageType: 'hello' });
      await sleep(200);
    }
    assert.ok(helloFrom, `no hello from ${OTHER} within 15 s`);
    assert.ok(gotAck, `${OTHER} never confirmed our hello within 15 s`);
    assert.deepStrictEqual(helloFrom.data.payload, hello(OTHER));
    assert.strictEqual(helloFrom.data.client.subject, `cross-${OTHER}`);
    return `JS subscriber received the Python publication intact (and Python received JS's)`;
  }, 18000);

  await L.scenario('9.rpc', async () => {
    assert.ok(client && helloFrom && gotAck, 'handshake with the other SDK failed');
    const [response] = await client
      .send({ q: `from ${ME}` }, { messageType: `ask-${OTHER}` })
      .waitForReply(5000);
    assert.strictEqual(response.status, 'ok');
    assert.deepStrictEqual(response.data, { answer: `from ${OTHER}`, echo: { q: `from ${ME}` } });
    return 'JS send → Python reply() → JS waitForReply resolved';
  });

  if (client) {
    client.publish(`cross/${OTHER}`, 'bye', { messageType: 'done' });
    if (!(await until(() => otherDone, 8000))) console.error(`cross ${ME}: no 'done' from ${OTHER}`);
  }
}

const hardStop = setTimeout(() => {
  console.error('js cross: hard timeout, exiting');
  process.exit(2);
}, 35000);

main()
  .catch((error) => console.error('js cross crashed:', error))
  .finally(async () => {
    L.closeAll();
    await sleep(200);
    clearTimeout(hardStop);
    process.exit(0);
  });
