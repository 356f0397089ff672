#!/usr/bin/env node
'use strict';
// The annex-p2phttp command: see `annex-p2phttp serve --help`.
const { main } = require('../apps/gateway/dist/cli.js');

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    process.stderr.write(`annex-p2phttp: ${error && error.stack ? error.stack : String(error)}\n`);
    process.exitCode = 1;
  },
);
