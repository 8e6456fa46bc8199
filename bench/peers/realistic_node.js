// The realistic service of bench/realistic.py (READING_CHECKED, PUSH_READING one-way, LATEST)
// written the way a Node.js developer would for speed: Buffer scanning for '\n', one
// socket.write per 'data' event carrying every reply of that read, the fields checked by hand
// with the same rules and the same error replies as the Python handler. No limits, no timeouts:
// a peer to beat, not a model.  Usage: node realistic_node.js PORT   (binds 127.0.0.1; 0 picks a
// free port; prints "listening on PORT")
'use strict';
const net = require('net');

const MAX_DEVICES = 10000;
const latest = new Map();

const INVALID_JSON = '{"status":"ERROR","message":"Invalid JSON","code":"invalid_json"}';
const NOT_AN_OBJECT = '{"status":"ERROR","message":"Message must be a JSON object","code":"not_an_object"}';
const INVALID_ID = '{"status":"ERROR","message":"The id must be a string, a number or null","code":"invalid_id"}';

function withId(reply, req) {
  // The reply, closed with the request's id when it has one.
  return 'id' in req ? reply + ',"id":' + JSON.stringify(req.id) + '}' : reply + '}';
}

function fieldError(detail) {
  const e = new Error(detail);
  e.field = true;
  return e;
}

function isDevice(d) {
  if (typeof d !== 'string' || d.length === 0) return false;
  // JavaScript counts UTF-16 units, Python code points: count those only when it matters.
  return d.length <= 64 || [...d].length <= 64;
}

function checkReading(m) {
  if (!isDevice(m.device)) throw fieldError('device must be a string of 1 to 64 characters');
  if (typeof m.at !== 'number') throw fieldError('at must be a number');
  if (typeof m.celsius !== 'number') throw fieldError('celsius must be a number');
  const h = m.humidity;
  if (typeof h !== 'number' || h < 0 || h > 1) throw fieldError('humidity must be a number from 0 to 1');
  const tags = m.tags;
  if (typeof tags !== 'object' || tags === null || Array.isArray(tags) || typeof tags.site !== 'string') {
    throw fieldError('tags must be an object with a string site');
  }
  const floor = tags.floor === undefined ? 0 : tags.floor;
  if (typeof floor !== 'number' || !Number.isInteger(floor) || floor < 0 || floor > 200) {
    throw fieldError('tags.floor must be a whole number from 0 to 200');
  }
  if (tags.line !== undefined && tags.line !== null && typeof tags.line !== 'string') {
    throw fieldError('tags.line must be a string or null');
  }
  const samples = m.samples === undefined ? [] : m.samples;
  if (!Array.isArray(samples) || samples.length > 64 || !samples.every((s) => typeof s === 'number')) {
    throw fieldError('samples must be a list of at most 64 numbers');
  }
  const unit = m.unit === undefined ? 'C' : m.unit;
  if (unit !== 'C' && unit !== 'F') throw fieldError('unit must be C or F');
  if (m.note !== undefined && typeof m.note !== 'string') throw fieldError('note must be a string');
  return samples;
}

const handlers = {
  READING_CHECKED(m) {
    const samples = checkReading(m);
    let sum = 0;
    for (const s of samples) sum += s;
    return { device: m.device, count: samples.length, mean: samples.length ? sum / samples.length : null };
  },
  // The typed READING of jsonproto's side: the same checks, by hand.
  READING(m) {
    return handlers.READING_CHECKED(m);
  },
  LATEST(m) {
    if (!isDevice(m.device)) throw fieldError('device must be a string of 1 to 64 characters');
    return Object.assign({ device: m.device }, latest.get(m.device) || { readings: 0 });
  },
};

const oneWay = {
  PUSH_READING(m) {
    checkReading(m);
    let known = latest.get(m.device);
    if (known === undefined) {
      if (latest.size >= MAX_DEVICES) throw fieldError(`device: more than ${MAX_DEVICES} devices`);
      known = { readings: 0 };
      latest.set(m.device, known);
    }
    known.readings += 1;
    known.at = m.at;
    known.celsius = m.celsius;
  },
};

// The reply to one line, without its '\n'; null for a blank line or a one-way message.
function answer(line) {
  if (/^[ \t\r\v\f]*$/.test(line)) return null;
  let req;
  try {
    req = JSON.parse(line);
  } catch (e) {
    return INVALID_JSON;
  }
  if (typeof req !== 'object' || req === null || Array.isArray(req)) return NOT_AN_OBJECT;
  const id = req.id;
  if (id !== undefined && id !== null && typeof id !== 'string' && typeof id !== 'number') return INVALID_ID;
  const kind = req.type;
  if (typeof kind !== 'string') return withId('{"status":"ERROR","message":"Message needs a string type","code":"invalid_type"', req);
  const push = Object.hasOwn(oneWay, kind) ? oneWay[kind] : null;
  if (push !== null) {
    try {
      push(req);
    } catch (e) {
      if (!e.field) throw e;
    }
    return null;
  }
  const handler = Object.hasOwn(handlers, kind) ? handlers[kind] : null;
  if (handler === null) return withId('{"status":"ERROR","message":"Unknown type","code":"unknown_type"', req);
  let result;
  try {
    result = handler(req);
  } catch (e) {
    if (!e.field) return withId('{"status":"ERROR","message":"Internal error","code":"internal_error"', req);
    return withId('{"status":"ERROR","message":"Invalid field","code":"invalid_field","detail":' + JSON.stringify(e.message), req);
  }
  const body = JSON.stringify(result);
  return withId('{"status":"OK"' + (body.length > 2 ? ',' + body.slice(1, -1) : ''), req);
}

const server = net.createServer((socket) => {
  socket.setNoDelay(true);
  let pending = null;
  socket.on('data', (data) => {
    const buf = pending ? Buffer.concat([pending, data]) : data;
    let start = 0, idx, out = '';
    while ((idx = buf.indexOf(10, start)) !== -1) {
      const reply = answer(buf.toString('utf8', start, idx));
      if (reply !== null) out += reply + '\n';
      start = idx + 1;
    }
    pending = start < buf.length ? buf.subarray(start) : null;
    if (out) socket.write(out);
  });
  socket.on('error', () => {});
});
server.listen(parseInt(process.argv[2], 10), '127.0.0.1', () => {
  console.log(`listening on ${server.address().port}`);
});
