// JS subscriber with the official SDK (npm realtime-pubsub-client).
//
//   node --experimental-websocket examples/js/subscriber.js DIR [TOPIC] [COUNT]
//
// Connects with a client token minted from DIR/client-config.js, subscribes to TOPIC
// (default `chat`) and prints every message as one JSON line. With COUNT it exits 0 after
// COUNT messages (the examples suite uses this); without, it runs until Ctrl-C.
'use strict'
const { loadSettings, connectClient } = require('../lib/settings')

async function main() {
  const settings = loadSettings()
  const [topic = 'chat', countText] = settings.args
  const count = countText ? Number(countText) : Infinity
  const { client, connection } = await connectClient(settings, { subject: 'js-subscriber' })

  let received = 0
  // SDK event names are `<topic>.<messageType>`; `*` matches any message type.
  client.on(`${topic}.*`, (message) => {
    const data = message.data
    // WebSocket publishers' messages carry {client, payload, id}; HTTP ones the message itself.
    const payload = data && data.client ? data.payload : data
    console.log(JSON.stringify({ topic: message.topic, messageType: message.messageType, payload }))
    received += 1
    if (received >= count) {
      client.disconnect()
      process.exit(0)
    }
  })
  client.subscribeRemoteTopic(topic)
  // Subscribing has no reply. A publish to our own private topic is acknowledged after
  // the broker has handled every earlier frame — so after the ack, the subscription is live.
  await client.publish(`priv/${connection.id}`, 'ready', { messageType: 'ready' }).waitForAck(5000)
  console.error(`subscribed to ${topic} as connection ${connection.id}; waiting for messages`)
}

main().catch((error) => {
  console.error('subscriber failed:', error && error.message ? error.message : error)
  process.exit(1)
})
