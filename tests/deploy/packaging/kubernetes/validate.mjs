// validate.mjs FILE...: validates every Kubernetes document in the YAML files against the
// schemas of the Kubernetes API (kubernetes-models, generated from the API's OpenAPI
// definitions) and of the Prometheus Operator, offline. Prints one line per document and
// exits 1 when any document fails or has a kind no schema here covers.
import fs from "node:fs";
import yaml from "js-yaml";
import * as core from "kubernetes-models/v1";
import * as apps from "kubernetes-models/apps/v1";
import * as monitoring from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";

const groups = { "v1": core, "apps/v1": apps, "monitoring.coreos.com/v1": monitoring };

let failed = false;
for (const file of process.argv.slice(2)) {
  const docs = yaml.loadAll(fs.readFileSync(file, "utf8")).filter((d) => d != null);
  for (const doc of docs) {
    const where = `${file}: ${doc.kind}/${doc.metadata && doc.metadata.name}`;
    const group = groups[doc.apiVersion];
    const Model = group && group[doc.kind];
    if (!Model) {
      console.log(`FAIL ${where}: no schema for ${doc.apiVersion} ${doc.kind}`);
      failed = true;
      continue;
    }
    try {
      new Model(doc).validate();
      console.log(`ok   ${where}`);
    } catch (err) {
      console.log(`FAIL ${where}: ${err.message}`);
      failed = true;
    }
  }
}
process.exit(failed ? 1 : 0);
