// The peer of `presence bench --peer hocuspocus`: one Hocuspocus server process with its Redis
// extension (as a deployment of more than one process runs it), its defaults otherwise.
//
// Usage: node hocuspocus-server.mjs PORT REDIS_PORT
// Listens on 127.0.0.1:PORT; plain HTTP answers 200 (the bench's readiness check). The bench copies
// this file next to the node_modules it installed, so that the imports below resolve there.

import { Redis } from "@hocuspocus/extension-redis";
import { Server } from "@hocuspocus/server";

const [port, redisPort] = process.argv.slice(2).map(Number);
if (!port || !redisPort) {
  console.error("usage: node hocuspocus-server.mjs PORT REDIS_PORT");
  process.exit(2);
}

const server = new Server({
  port,
  address: "127.0.0.1",
  quiet: true,
  extensions: [new Redis({ host: "127.0.0.1", port: redisPort })],
});
await server.listen();
console.log(`hocuspocus listening on 127.0.0.1:${port}, redis 127.0.0.1:${redisPort}`);
