// Shared by the Node examples: finds the `ringcast init` output and the installed SDKs.
//
// The init directory is the first command-line argument, else $RINGCAST_DIR, else the
// current directory; its client-config.js holds the URL, the app id and mintToken().
// $RINGCAST_ADDRESS=host:port points every example at a broker elsewhere than the
// config's 127.0.0.1:8080 (client-config.js reads it).
//
// Packages resolve the normal way (npm install realtime-pubsub-client jsonwebtoken), and
// fall back to .build/npm/node_modules, where scripts/install-sdks.sh puts them.
'use strict'
const fs = require('fs')
const path = require('path')

const repository = path.resolve(__dirname, '..', '..')

function requirePackage(name) {
  try {
    return require(name)
  } catch (error) {
    if (error.code !== 'MODULE_NOT_FOUND') throw error
    return require(path.join(repository, '.build', 'npm', 'node_modules', name))
  }
}

function loadSettings(argv = process.argv.slice(2)) {
  const directory = path.resolve(argv[0] || process.env.RINGCAST_DIR || '.')
  const file = path.join(directory, 'client-config.js')
  if (!fs.existsSync(file)) {
    const dir = argv[0] || 'DIR'
    console.error(`no ${file}: run \`ringcast init --dir ${dir}\` first (\`cargo install --path .\` ` +
      `puts ringcast on the PATH; in the checkout, \`cargo run --release -- init --dir ${dir}\` works too)`)
    process.exit(2)
  }
  const config = require(file)
  const jwt = config.algorithm === 'EdDSA' ? null : requirePackage('jsonwebtoken')
  return {
    ...config,
    args: argv.slice(1),
    mintToken: (options = {}) => config.mintToken({ jwt, ...options }),
  }
}

// A connected RealtimeClient of the official SDK, pointed at the local broker through its
// `urlProvider` option (the SDK itself is unmodified). Resolves after the welcome frame.
async function connectClient(settings, { subject, permissions } = {}) {
  if (typeof WebSocket === 'undefined') {
    console.error('run with `node --experimental-websocket` (Node 20) or Node 22+')
    process.exit(2)
  }
  const { RealtimeClient } = requirePackage('realtime-pubsub-client')
  const client = new RealtimeClient({
    websocketOptions: {
      maxRetries: 10,
      urlProvider: async () =>
        `${settings.url}?access_token=${settings.mintToken({ subject, permissions })}`,
    },
  })
  client.on('error', (error) => console.error('websocket error:', error.message))
  const started = client.waitFor('session.started', { timeout: 10000 })
  await client.connect()
  const [connection] = await started
  return { client, connection }
}

module.exports = { loadSettings, connectClient, requirePackage }
