// Validate glTF/GLB files with the Khronos glTF validator (npm package gltf-validator, installed by
// `make tools` into .tools/). Usage: node validate_gltf.js VALIDATOR_DIR FILE...; prints one JSON
// report per file, as a JSON list, on stdout.
const fs = require("fs");
const path = require("path");
const validator = require(path.resolve(process.argv[2]));

(async () => {
  const reports = [];
  for (const file of process.argv.slice(3)) {
    const report = await validator.validateBytes(new Uint8Array(fs.readFileSync(file)), {
      uri: path.basename(file),
      maxIssues: 100,
      externalResourceFunction: (uri) => Promise.resolve(
        new Uint8Array(fs.readFileSync(path.resolve(path.dirname(file), decodeURIComponent(uri))))),
    });
    reports.push(report);
  }
  process.stdout.write(JSON.stringify(reports));
})().catch((e) => { console.error(String(e)); process.exit(1); });
