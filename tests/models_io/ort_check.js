// Runs an ONNX model with ONNX Runtime (npm onnxruntime-node, CPU) on inputs from a JSON file
// and prints the outputs as JSON: an independent runtime for qsig's exported models.
//
//   node ort_check.js MODEL.onnx INPUTS.json
//   INPUTS.json: {"input": "features", "shape": [n, f], "data": [n * f floats]}
//   stdout:      {"output": "<name>", "shape": [...], "data": [...], "ort_version": "..."}
//
// onnxruntime-node is looked up in $QSIG_ORT_DIR/node_modules, then the usual node paths.
// Install it without its install script (which downloads GPU binaries):
//   npm install --ignore-scripts --prefix DIR onnxruntime-node@1.30.0
'use strict';
const fs = require('fs');
const path = require('path');

function loadOrt() {
  const dir = process.env.QSIG_ORT_DIR;
  if (dir) {
    try {
      return require(path.join(dir, 'node_modules', 'onnxruntime-node'));
    } catch (e) {
      // Fall through to the default lookup.
    }
  }
  return require('onnxruntime-node');
}

async function main() {
  if (process.argv.length !== 4) {
    process.stderr.write('usage: node ort_check.js MODEL.onnx INPUTS.json\n');
    process.exit(2);
  }
  const ort = loadOrt();
  const input = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'));
  // Default graph optimizations, as a deployment would run the model (QDQ pairs may be fused
  // into integer kernels).
  const session = await ort.InferenceSession.create(process.argv[2], {
    executionProviders: ['cpu'],
  });
  const name = input.input || session.inputNames[0];
  const feeds = {};
  feeds[name] = new ort.Tensor('float32', Float32Array.from(input.data), input.shape);
  const results = await session.run(feeds);
  const outName = session.outputNames[0];
  const out = results[outName];
  process.stdout.write(JSON.stringify({
    output: outName,
    shape: out.dims,
    data: Array.from(out.data),
    ort_version: ort.env.versions ? ort.env.versions.common : 'unknown',
  }) + '\n');
}

main().catch((e) => {
  process.stderr.write('ort_check: ' + (e && e.stack ? e.stack : e) + '\n');
  process.exit(1);
});
