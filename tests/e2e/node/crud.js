// crud.js URI MARKER [APPNAME]: inserts {marker: MARKER} with the Node.js driver and finds it back.
// Prints {"ok":true,...} on success; on failure prints every error the driver recorded
// (the top-level one and each server's) on stderr and exits 1, so that tests can look
// for the reason a connection was refused.
'use strict';

const { MongoClient } = require('mongodb');

function describe(err) {
  const lines = [`${err.name}: ${err.message}`];
  if (err.cause) {
    lines.push(`cause: ${err.cause.message || err.cause}`);
  }
  const servers = err.reason && err.reason.servers;
  if (servers) {
    for (const [address, server] of servers) {
      if (server.error) {
        lines.push(`${address}: ${server.error.name}: ${server.error.message}`);
      }
    }
  }
  return lines.join('\n');
}

async function main() {
  const [uri, marker, appName = 'e2e-node'] = process.argv.slice(2);
  const client = new MongoClient(uri, { serverSelectionTimeoutMS: 5000, appName });
  try {
    await client.connect();
    const coll = client.db('e2e').collection('node');
    const inserted = await coll.insertOne({ marker, client: 'node' });
    const found = await coll.findOne({ marker });
    if (found === null || found.marker !== marker) {
      throw new Error(`document ${marker} not found after insert`);
    }
    console.log(JSON.stringify({ ok: true, id: String(inserted.insertedId) }));
  } finally {
    await client.close();
  }
}

main().catch((err) => {
  console.error(describe(err));
  process.exit(1);
});
