import { type Server, createServer } from 'node:net';

function listenOnAny(): Promise<{ server: Server; port: number }> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      done({ server, port: typeof address === 'object' && address ? address.port : 0 });
    });
  });
}

function close(server: Server): Promise<void> {
  return new Promise((done) => server.close(() => done()));
}

/**
 * `count` distinct ports that were free a moment ago (the OS picks them).
 *
 * Every listener stays open until all are chosen: closing each before asking for the next lets
 * the OS hand the same port out twice, which once gave Azurite's Blob and Table services one port.
 */
export async function freePorts(count: number): Promise<number[]> {
  const held: Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < count; i += 1) {
      const { server, port } = await listenOnAny();
      held.push(server);
      ports.push(port);
    }
    return ports;
  } finally {
    await Promise.all(held.map(close));
  }
}

/** One port that was free a moment ago. For several, use {@link freePorts}: they are then distinct. */
export async function freePort(): Promise<number> {
  const [port] = await freePorts(1);
  if (port === undefined) throw new Error('the OS gave no port');
  return port;
}
