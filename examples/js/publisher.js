// JS publisher with the official SDK (npm realtime-pubsub-client).
//
//   node --experimental-websocket examples/js/publisher.js DIR [TOPIC] [MESSAGE...]
//
// Connects with a client token minted from DIR/client-config.js, publishes each MESSAGE
// (default: one greeting) to TOPIC (default `chat`) as messageType `text-message`, waits
// for the broker's ack of each, and exits.
'use strict'
const { loadSettings, connectClient } = require('../lib/settings')

async function main() {
  const settings = loadSettings()
  const [topic = 'chat', ...messages] = settings.args
  if (messages.length === 0) messages.push(`hello from the JS publisher at ${new Date().toISOString()}`)
  const { client } = await connectClient(settings, { subject: 'js-publisher' })
  for (const text of messages) {
    // The ack comes once the broker has authorised the publication and handed it to fan-out.
    await client.publish(topic, text, { messageType: 'text-message' }).waitForAck(5000)
    console.log(`published to ${topic}: ${text}`)
  }
  client.disconnect()
  process.exit(0)
}

main().catch((error) => {
  console.error('publisher failed:', error && error.message ? error.message : error)
  process.exit(1)
})
