// load.js URI STOPFILE LABEL: inserts a document and reads it back, over and over, with the
// Node.js driver, until STOPFILE exists. Prints {"ops":N,"failures":N,"errors":[...]} where an
// operation is one insert or one find and a failure is one the application saw (after the
// driver's own retryable read/write retry).
'use strict';

const fs = require('fs');
const { MongoClient } = require('mongodb');

async function main() {
  const [uri, stopFile, label] = process.argv.slice(2);
  const client = new MongoClient(uri, { serverSelectionTimeoutMS: 10000, appName: label });
  const result = { ops: 0, failures: 0, errors: [] };
  try {
    await client.connect();
    const coll = client.db('e2e').collection('load');
    for (let i = 0; !fs.existsSync(stopFile); i++) {
      const marker = `${label}-${i}`;
      let step = 'insertOne';
      try {
        await coll.insertOne({ marker });
        result.ops++;
        step = 'findOne';
        const found = await coll.findOne({ marker });
        result.ops++;
        if (found === null || found.marker !== marker) {
          throw new Error(`document ${marker} not found after insert`);
        }
      } catch (err) {
        result.failures++;
        if (result.errors.length < 5) {
          const labels = err.errorLabels ? ` [${[...err.errorLabels].join(',')}]` : '';
          result.errors.push(`${step} at ${new Date().toISOString()}: ${err.name}: ${err.message}${labels}`);
        }
      }
    }
  } finally {
    await client.close();
  }
  console.log(JSON.stringify(result));
}

main().catch((err) => {
  console.log(JSON.stringify({ ops: 0, failures: 1, errors: [`${err.name}: ${err.message}`] }));
  process.exit(1);
});
