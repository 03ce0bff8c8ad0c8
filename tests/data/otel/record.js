// Records real OTLP/JSON spans of PostgreSQL queries: the OpenTelemetry JS
// SDK with its pg instrumentation, exporting over OTLP/HTTP (JSON) to a
// local capture server that writes each export request as one line (the
// shape of the Collector's file exporter). See ../README.md.
//   PGPORT=55492 node record.js > spans.otlp.jsonl
const http = require('http');
const { NodeTracerProvider } = require('@opentelemetry/sdk-trace-node');
const { BatchSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-http');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const { registerInstrumentations } = require('@opentelemetry/instrumentation');
const { PgInstrumentation } = require('@opentelemetry/instrumentation-pg');

const bodies = [];
const server = http.createServer((req, res) => {
  let body = '';
  req.on('data', (c) => (body += c));
  req.on('end', () => {
    bodies.push(body.replace(/\n/g, ''));
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end('{}');
  });
});

async function main() {
  await new Promise((r) => server.listen(4318, '127.0.0.1', r));
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'checkout-api' }),
    spanProcessors: [
      new BatchSpanProcessor(new OTLPTraceExporter({ url: 'http://127.0.0.1:4318/v1/traces' }), {
        maxExportBatchSize: 100,
        scheduledDelayMillis: 200,
      }),
    ],
  });
  provider.register();
  registerInstrumentations({ instrumentations: [new PgInstrumentation()] });
  const { Client } = require('pg');
  const port = Number(process.env.PGPORT || 55492);
  // 3 clients, each 40 statements at random (exponential) intervals.
  const clients = [];
  for (let c = 0; c < 3; c++) {
    const cl = new Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
    await cl.connect();
    clients.push(cl);
  }
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  await Promise.all(
    clients.map(async (cl, c) => {
      for (let i = 0; i < 40; i++) {
        await sleep(-Math.log(1 - Math.random()) * 20);
        const aid = 1 + Math.floor(Math.random() * 100000);
        if (i % 4 === 3) {
          await cl.query('UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2', [1, aid]);
        } else {
          await cl.query('SELECT abalance FROM pgbench_accounts WHERE aid = $1', [aid]);
        }
      }
    })
  );
  for (const cl of clients) await cl.end();
  await provider.forceFlush();
  await provider.shutdown();
  server.close();
  process.stdout.write(bodies.filter((b) => b.length > 0).join('\n') + '\n');
}
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
