// RPC requester with the official JS SDK (npm realtime-pubsub-client).
//
//   node --experimental-websocket examples/rpc/requester.js DIR [COUNT]
//
// Sends COUNT (default 1) `gettime` requests with `client.send` (WebSocket inbound
// messaging: the broker delivers them on `secure/inbound`, no permission needed) and waits
// for each reply, which a replier (examples/rpc/replier.py) publishes to this connection's
// private topic `priv/<connection id>` with messageType `response`. Start the replier first.
'use strict'
const { loadSettings, connectClient } = require('../lib/settings')

async function main() {
  const settings = loadSettings()
  const count = Number(settings.args[0] || 1)
  // No permission is needed to send, nor to receive on the connection's own private topic.
  const { client } = await connectClient(settings, { subject: 'rpc-requester', permissions: [] })
  for (let index = 0; index < count; index += 1) {
    const [response] = await client
      .send({ question: 'what time is it?' }, { messageType: 'gettime' })
      .waitForReply(5000)
    console.log(`reply ${index + 1}: ${JSON.stringify(response)}`)
  }
  client.disconnect()
  process.exit(0)
}

main().catch((error) => {
  console.error('requester failed:', error && error.message ? error.message : error)
  process.exit(1)
})
