#!/usr/bin/env node
/*
 * Stratus bootstrap for Node.js 20 (CommonJS, built-in modules only).
 *
 * Speaks the frame protocol documented in runtime/stratus_bootstrap/protocol.py:
 * 4-byte big-endian length + UTF-8 JSON object, on the fd(s) named by STRATUS_CONTROL_FD
 * ("<fd>" for a stream socket, "<r>,<w>" for a pipe pair).
 *
 * Supported: STRATUS_KIND=event, with Lambda-style handlers, finishing as Lambda's Node runtime
 * finishes them:
 *   exports.handler = async (event, context) => result      answers when the promise settles
 *   exports.handler = (event, context, callback) => callback(null, result)
 *   exports.handler = (event, context) => context.succeed(result)   (or .fail(err), .done(err, r))
 *     answer when the callback / context.succeed|fail|done is called; with
 *     context.callbackWaitsForEmptyEventLoop true (the default) only once the event loop is
 *     empty, with false at once. An error passed to them is an error answer, never a null result.
 *   a non-async handler that returns nothing and calls nothing answers null once its event loop
 *     is empty (what it started runs to the end first);
 *   exports.handler = (event, context) => result            a plain value returned by a
 *     two-parameter handler answers at once (a Stratus extension; Lambda ignores it). Other
 *     objects returned (a Timeout from an arrow function's setTimeout(...)) are ignored, as there.
 * "The event loop is empty" is Node's own 'beforeExit': while a handler waits for it the control
 * channel is unref'd, so only the handler's timers, sockets and promises keep the loop alive.
 * ESM handlers load: index.mjs, or index.js under a package.json with "type": "module".
 * Log lines written after an answer (a timer the handler left running) carry that request's id
 * until the next request starts; the engine attributes them to it.
 * The context is Lambda-compatible (awsRequestId, getRemainingTimeInMillis(), ...) and carries the
 * SCF snake_case fields (request_id, function_name, ...).
 *
 * STRATUS_KIND=http is NOT supported on node20 yet: the handler module is still loaded (so init
 * errors are reported), but every "http" frame is answered with an error frame of type
 * "Unsupported". The Node contract for now is the event handler only.
 *
 * Known differences from the Python bootstrap:
 * - Node cannot mark inherited fds close-on-exec without a native addon, so the control fd(s)
 *   stay inheritable by child processes that user code spawns.
 * - Only writes made through console.* and process.stdout/stderr.write become log frames; bytes a
 *   child process (or native code) writes straight to fds 1/2 go to the real stdout/stderr.
 */
'use strict';

const fs = require('fs');
const net = require('net');
const path = require('path');
const util = require('util');
const crypto = require('crypto');
const { StringDecoder } = require('string_decoder');
const { pathToFileURL } = require('url');

const MAX_FRAME_BYTES = 64 * 1024 * 1024;
const MAX_LOG_LINE = 16 * 1024;
const BOOTSTRAP_FILE = __filename;
// AWS_REGION / AWS_DEFAULT_REGION / TENCENTCLOUD_REGION when the engine names none (STRATUS_REGION).
const DEFAULT_REGION = 'us-east-1';

// --- configuration ------------------------------------------------------------------------------

function readConfig(env) {
  const values = {};
  for (const key of Object.keys(env)) {
    if (key.startsWith('STRATUS_')) {
      values[key] = env[key];
      delete env[key];
    }
  }
  const number = (key, dflt) => {
    const n = Number(values[key] || '');
    return values[key] && Number.isFinite(n) ? n : dflt;
  };
  const kind = values.STRATUS_KIND || 'event';
  const name = values.STRATUS_FUNCTION_NAME || 'function';
  const version = values.STRATUS_FUNCTION_VERSION || '$LATEST';
  const instanceId = crypto.randomUUID().replace(/-/g, '');
  const day = new Date().toISOString().slice(0, 10).replace(/-/g, '/');
  const fn = {
    name,
    version,
    memoryMb: Math.trunc(number('STRATUS_MEMORY_MB', 128)),
    timeoutS: number('STRATUS_TIMEOUT_S', 3),
    instanceId,
    namespace: values.STRATUS_PROJECT || 'default',
    logGroupName: `/stratus/functions/${name}`,
    // One stream per instance, as on Lambda: the day it started, the version, the instance.
    logStreamName: `${day}/[${version}]${instanceId}`,
  };
  const handler = values.STRATUS_HANDLER || 'index.handler';
  const taskRoot = values.STRATUS_TASK_ROOT || '/var/task';
  Object.assign(
    env,
    platformEnvironment(fn, {
      handler,
      taskRoot,
      runtime: values.STRATUS_RUNTIME || `node${process.versions.node.split('.')[0]}`,
      runtimeDir: path.dirname(__dirname),
    }),
  );
  // What a function may set for itself (Lambda lets TZ be changed; a region of its own): the
  // platform's value only where the function's variables have none.
  const region = env.AWS_REGION || values.STRATUS_REGION || DEFAULT_REGION;
  const defaults = {
    AWS_REGION: region,
    AWS_DEFAULT_REGION: region,
    TENCENTCLOUD_REGION: values.STRATUS_REGION || DEFAULT_REGION,
    TZ: ':UTC', // Lambda's value; Node reads a changed TZ at once
    LANG: 'C.UTF-8', // Lambda says en_US.UTF-8: the same encoding, without locale data to install
  };
  for (const [key, value] of Object.entries(defaults)) {
    if (!env[key]) env[key] = value;
  }
  return {
    controlFd: values.STRATUS_CONTROL_FD || '',
    handler,
    kind,
    taskRoot,
    fn,
  };
}

// The variables Lambda's and SCF's runtimes define for every function, with Stratus's values;
// the same names and values as runtime/stratus_bootstrap/loop.py platform_environment. They win
// over a function's own variables of the same name (both platforms reserve them).
function platformEnvironment(fn, { handler, taskRoot, runtime, runtimeDir }) {
  const node = runtime.startsWith('node');
  const lambdaRuntime = node ? `${runtime.replace('node', 'nodejs')}.x` : runtime;
  const scfRuntime = node ? runtime.replace('node', 'Nodejs') : runtime.charAt(0).toUpperCase() + runtime.slice(1);
  return {
    LAMBDA_TASK_ROOT: taskRoot,
    LAMBDA_RUNTIME_DIR: runtimeDir,
    _HANDLER: handler,
    AWS_EXECUTION_ENV: `AWS_Lambda_${lambdaRuntime}`,
    AWS_LAMBDA_FUNCTION_NAME: fn.name,
    AWS_LAMBDA_FUNCTION_VERSION: fn.version,
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(fn.memoryMb),
    AWS_LAMBDA_LOG_GROUP_NAME: fn.logGroupName,
    AWS_LAMBDA_LOG_STREAM_NAME: fn.logStreamName,
    AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
    SCF_FUNCTIONNAME: fn.name,
    SCF_FUNCTIONVERSION: fn.version,
    SCF_NAMESPACE: fn.namespace,
    SCF_RUNTIME: scfRuntime,
    USER_CODE_ROOT: taskRoot,
    TENCENTCLOUD_RUNENV: 'SCF',
  };
}

function fatal(message, code) {
  try {
    fs.writeSync(2, `stratus_bootstrap(node): ${message}\n`);
  } catch (_) {
    // nothing left to report to
  }
  process.exit(code);
}

// --- control channel ----------------------------------------------------------------------------

class Channel {
  constructor(spec) {
    const parts = String(spec).split(',').map((p) => p.trim());
    const fds = parts.map((p) => (/^\d+$/.test(p) ? Number(p) : NaN));
    if ((fds.length !== 1 && fds.length !== 2) || fds.some((fd) => !Number.isInteger(fd))) {
      throw new Error(`STRATUS_CONTROL_FD must be '<fd>' or '<read fd>,<write fd>', got '${spec}'`);
    }
    if (fds.length === 1) {
      const sock = new net.Socket({ fd: fds[0], readable: true, writable: true, allowHalfOpen: true });
      this.reader = sock;
      this.writer = sock;
    } else {
      // Pipes as sockets where they can be (so the reader can be unref'd while a handler waits
      // for its event loop to drain); anything else as plain fd streams.
      try {
        this.reader = new net.Socket({ fd: fds[0], readable: true, writable: false });
        this.writer = new net.Socket({ fd: fds[1], readable: false, writable: true });
      } catch (_) {
        this.reader = fs.createReadStream(null, { fd: fds[0], autoClose: false, highWaterMark: 65536 });
        this.writer = fs.createWriteStream(null, { fd: fds[1], autoClose: false });
      }
    }
    this.buffer = Buffer.alloc(0);
    this.closed = false;
    this.writer.on('error', () => {
      // The supervisor went away: nothing to answer to any more.
      process.exit(0);
    });
  }

  // Calls onMessage(msg) for every complete frame and onEnd() at end of file.
  start(onMessage, onEnd) {
    this.reader.on('data', (chunk) => {
      this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
      while (this.buffer.length >= 4) {
        const length = this.buffer.readUInt32BE(0);
        if (length > MAX_FRAME_BYTES) {
          fatal(`frame of ${length} bytes exceeds the ${MAX_FRAME_BYTES} byte limit`, 3);
          return;
        }
        if (this.buffer.length < 4 + length) break;
        const body = this.buffer.subarray(4, 4 + length);
        this.buffer = this.buffer.subarray(4 + length);
        let message;
        try {
          message = JSON.parse(body.toString('utf8'));
        } catch (err) {
          fatal(`invalid JSON in a frame: ${err.message}`, 3);
          return;
        }
        if (message === null || typeof message !== 'object' || Array.isArray(message)) {
          fatal('a frame must hold a JSON object', 3);
          return;
        }
        onMessage(message);
      }
    });
    this.reader.on('end', () => {
      if (this.buffer.length) {
        fatal('unexpected end of file in a frame', 3);
        return;
      }
      onEnd();
    });
    this.reader.on('error', () => onEnd());
  }

  // Whether the channel may keep the event loop alive: while a handler waits for its event loop
  // to be empty it must not, or 'beforeExit' never comes.
  canUnref() {
    return typeof this.reader.unref === 'function';
  }

  unref() {
    if (this.canUnref()) this.reader.unref();
  }

  ref() {
    if (typeof this.reader.ref === 'function') this.reader.ref();
  }

  writeRaw(frame, callback) {
    this.writer.write(frame, callback);
  }

  write(message, callback) {
    this.writeRaw(encodeFrame(JSON.stringify(message)), callback);
  }
}

function encodeFrame(json) {
  const body = Buffer.from(json, 'utf8');
  const header = Buffer.alloc(4);
  header.writeUInt32BE(body.length, 0);
  return Buffer.concat([header, body]);
}

// --- log capture --------------------------------------------------------------------------------

class LogCapture {
  constructor(channel) {
    this.channel = channel;
    this.requestId = null;
    this.pending = { stdout: '', stderr: '' };
    this.decoders = { stdout: new StringDecoder('utf8'), stderr: new StringDecoder('utf8') };
  }

  emitLine(stream, line) {
    if (line.endsWith('\r')) line = line.slice(0, -1);
    let rest = line;
    while (Buffer.byteLength(rest, 'utf8') > MAX_LOG_LINE) {
      const buf = Buffer.from(rest, 'utf8');
      let cut = MAX_LOG_LINE;
      while (cut > 0 && (buf[cut] & 0xc0) === 0x80) cut -= 1;
      this.channel.write({ type: 'log', id: this.requestId, stream, text: buf.subarray(0, cut).toString('utf8') });
      rest = buf.subarray(cut).toString('utf8');
    }
    this.channel.write({ type: 'log', id: this.requestId, stream, text: rest });
  }

  write(stream, chunk, encoding) {
    let text;
    if (typeof chunk === 'string') {
      text = encoding && encoding !== 'utf8' && encoding !== 'utf-8' ? Buffer.from(chunk, encoding).toString('utf8') : chunk;
    } else if (chunk instanceof Uint8Array) {
      text = this.decoders[stream].write(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    } else {
      text = String(chunk);
    }
    let data = this.pending[stream] + text;
    let nl = data.indexOf('\n');
    while (nl !== -1) {
      this.emitLine(stream, data.slice(0, nl));
      data = data.slice(nl + 1);
      nl = data.indexOf('\n');
    }
    this.pending[stream] = data;
  }

  // Emit partial lines, so everything written so far precedes the next response frame.
  sync() {
    for (const stream of ['stdout', 'stderr']) {
      const rest = this.pending[stream] + this.decoders[stream].end();
      this.pending[stream] = '';
      if (rest) this.emitLine(stream, rest);
    }
  }

  install() {
    const makeWrite = (stream) =>
      function write(chunk, encoding, callback) {
        if (typeof encoding === 'function') {
          callback = encoding;
          encoding = undefined;
        }
        capture.write(stream, chunk, encoding);
        if (typeof callback === 'function') process.nextTick(callback);
        return true;
      };
    const capture = this;
    process.stdout.write = makeWrite('stdout');
    process.stderr.write = makeWrite('stderr');
    const line = (stream) => (...args) => capture.write(stream, util.format(...args) + '\n');
    console.log = line('stdout');
    console.info = line('stdout');
    console.debug = line('stdout');
    console.warn = line('stderr');
    console.error = line('stderr');
    console.trace = (...args) => {
      const err = new Error(util.format(...args));
      err.name = 'Trace';
      capture.write('stderr', cleanStack(err.stack).join('\n') + '\n');
    };
  }
}

// --- errors -------------------------------------------------------------------------------------

function cleanStack(stack) {
  return String(stack || '')
    .split('\n')
    .filter((line) => !line.includes(BOOTSTRAP_FILE));
}

function errorPayload(err) {
  if (err instanceof Error || (err && typeof err === 'object' && typeof err.message === 'string')) {
    const type = String(err.name || (err.constructor && err.constructor.name) || 'Error');
    let message = String(err.message);
    if (type === 'SyntaxError' && typeof err.stack === 'string') {
      // A module syntax error's stack starts with "<file>:<line>".
      const where = /^(.*):(\d+)$/.exec(err.stack.split('\n')[0]);
      if (where && where[1]) message = `${message} (${where[1]}, line ${where[2]})`;
    }
    const stack = cleanStack(err.stack);
    return { type, message, stack: stack.length === 1 && stack[0] === '' ? [] : stack };
  }
  let message;
  if (typeof err === 'string') {
    message = err;
  } else {
    try {
      message = JSON.stringify(err);
    } catch (_) {
      message = util.inspect(err);
    }
    if (message === undefined) message = String(err);
  }
  return { type: 'Error', message, stack: [] };
}

class HandlerNotFound extends Error {
  constructor(message) {
    super(message);
    this.name = 'HandlerNotFound';
  }
}

// --- handler loading ----------------------------------------------------------------------------

// "index.handler" -> <root>/index(.js|.cjs|.mjs) export "handler"; "src/app.main" ->
// <root>/src/app export "main"; "index.a.b" -> export a.b (nested), like Lambda.
async function loadHandler(spec, taskRoot) {
  const slash = spec.lastIndexOf('/');
  const dir = slash === -1 ? '' : spec.slice(0, slash);
  const base = spec.slice(slash + 1);
  const dot = base.indexOf('.');
  if (dot <= 0 || dot === base.length - 1) {
    throw new HandlerNotFound(`Bad handler '${spec}': expected 'file.export'`);
  }
  const moduleName = base.slice(0, dot);
  const attrPath = base.slice(dot + 1);
  const stem = path.resolve(taskRoot, dir, moduleName);
  let file = stem;
  for (const ext of ['.js', '.cjs', '.mjs']) {
    if (fs.existsSync(stem + ext)) {
      file = stem + ext;
      break;
    }
  }
  let mod;
  if (file.endsWith('.mjs')) {
    mod = await import(pathToFileURL(file).href);
  } else {
    try {
      mod = require(file);
    } catch (err) {
      if (!err || err.code !== 'ERR_REQUIRE_ESM') throw err;
      mod = await import(pathToFileURL(file).href);
    }
  }
  let obj = mod;
  for (const part of attrPath.split('.')) {
    obj = obj == null ? undefined : obj[part];
    if (obj === undefined && part === attrPath.split('.')[0] && mod && mod.default) {
      obj = mod.default[part];
    }
    if (obj === undefined) {
      throw new HandlerNotFound(`Handler '${attrPath}' missing on module '${path.join(dir, moduleName)}'`);
    }
  }
  if (typeof obj !== 'function') {
    throw new HandlerNotFound(`Handler '${spec}' is not a function`);
  }
  return obj;
}

// --- context ------------------------------------------------------------------------------------

function makeContext(requestId, deadlineMs, fn) {
  const envJson = JSON.stringify(process.env);
  const environ = Object.entries(process.env)
    .map(([k, v]) => `${k}=${v}`)
    .join(';');
  const context = {
    awsRequestId: requestId,
    functionName: fn.name,
    functionVersion: fn.version,
    memoryLimitInMB: String(fn.memoryMb),
    invokedFunctionArn: `stratus:fn:${fn.name}:${fn.version}`,
    logGroupName: fn.logGroupName,
    logStreamName: fn.logStreamName,
    callbackWaitsForEmptyEventLoop: false,
    identity: undefined,
    clientContext: undefined,
    getRemainingTimeInMillis() {
      return Math.max(0, Math.trunc(deadlineMs - Date.now()));
    },
    // SCF (Tencent Cloud) field names
    request_id: requestId,
    function_name: fn.name,
    function_version: fn.version,
    memory_limit_in_mb: fn.memoryMb,
    time_limit_in_ms: Math.trunc(fn.timeoutS * 1000),
    namespace: fn.namespace,
    environment: envJson,
    environ,
  };
  return context;
}

// A value a sync handler returned that is an answer: JSON-like data, not a Timeout, a stream
// or another object an arrow function happens to return.
function isPlainValue(value) {
  if (value === undefined || typeof value === 'function') return false;
  if (value === null || typeof value !== 'object') return true;
  if (Array.isArray(value)) return true;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

// --- main loop ----------------------------------------------------------------------------------

class Bootstrap {
  constructor(config, channel, logs) {
    this.config = config;
    this.channel = channel;
    this.logs = logs;
    this.handler = null;
    this.queue = [];
    this.busy = false;
    this.inflight = null; // {fail} of the running invocation
    this.onEmptyLoop = null; // what to do once the event loop is empty (see invoke)
    this.exiting = false;
  }

  async init() {
    const root = this.config.taskRoot;
    try {
      if (fs.statSync(root).isDirectory()) process.chdir(root);
    } catch (_) {
      // a missing task root shows up as a missing handler module below
    }
    const start = performance.now();
    try {
      this.handler = await loadHandler(this.config.handler, root);
    } catch (err) {
      this.logs.sync();
      this.exit(1, { type: 'init_error', error: errorPayload(err) });
      return false;
    }
    const initMs = performance.now() - start;
    this.logs.sync();
    this.channel.write({ type: 'ready', init_ms: initMs });
    return true;
  }

  exit(code, message) {
    if (this.exiting) return;
    this.exiting = true;
    this.logs.sync();
    const done = () => process.exit(code);
    if (message) this.channel.write(message, done);
    else this.channel.writeRaw(Buffer.alloc(0), done);
  }

  enqueue(message) {
    this.queue.push(message);
    this.pump();
  }

  async pump() {
    if (this.busy) return;
    this.busy = true;
    try {
      while (this.queue.length && !this.exiting) {
        const message = this.queue.shift();
        if (message === null || message.type === 'shutdown') {
          this.exit(0);
          return;
        }
        await this.serve(message);
      }
    } finally {
      this.busy = false;
    }
  }

  async serve(message) {
    const kind = message.type;
    const requestId = message.id === undefined ? null : message.id;
    if (kind !== 'invoke' && kind !== 'http') {
      this.channel.write({
        type: 'error',
        id: requestId,
        error: { type: 'ProtocolError', message: `unknown message type '${kind}'`, stack: [] },
        duration_ms: 0.0,
      });
      return;
    }
    this.logs.requestId = requestId === null ? null : String(requestId);
    const start = performance.now();
    let reply;
    try {
      if (kind === 'http') {
        if (this.config.kind === 'http') {
          const err = new Error('http kind is not supported on node20 yet');
          err.name = 'Unsupported';
          err.stack = '';
          throw err;
        }
        throw new Error(`an 'http' request reached a function of kind '${this.config.kind}'`);
      }
      if (this.config.kind !== 'event') {
        throw new Error(`an 'invoke' request reached a function of kind '${this.config.kind}'`);
      }
      const result = await this.invoke(message);
      reply = { type: 'result', id: requestId, result: result === undefined ? null : result };
    } catch (err) {
      reply = { type: 'error', id: requestId, error: errorPayload(err) };
    }
    reply.duration_ms = performance.now() - start;
    this.logs.sync();
    // Lines written after the answer (a timer the handler left behind) keep this request's id
    // until the next request starts: they belong to it, as on Lambda.
    let json;
    try {
      json = JSON.stringify(reply);
      if (json === undefined) throw new TypeError('result is not JSON serialisable');
    } catch (err) {
      json = JSON.stringify({
        type: 'error',
        id: requestId,
        error: { type: 'ResultNotSerializable', message: String((err && err.message) || err), stack: [] },
        duration_ms: reply.duration_ms,
      });
    }
    this.channel.writeRaw(encodeFrame(json));
  }

  invoke(message) {
    const deadline =
      typeof message.deadline_ms === 'number'
        ? message.deadline_ms
        : Date.now() + this.config.fn.timeoutS * 1000;
    const context = makeContext(String(message.id), deadline, this.config.fn);
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (err, value, failed) => {
        if (settled) return;
        settled = true;
        this.inflight = null;
        this.stopWaitingForEmptyLoop();
        if (failed) reject(err);
        else resolve(value);
      };
      // The callback, context.done/succeed/fail: Lambda answers once the event loop is empty
      // (callbackWaitsForEmptyEventLoop, read when they are called), or at once with false.
      let called = false;
      const complete = (err, value, failed) => {
        if (settled || called) return;
        called = true;
        if (context.callbackWaitsForEmptyEventLoop && this.channel.canUnref()) {
          this.waitForEmptyLoop(() => settle(err, value, failed));
        } else {
          settle(err, value, failed);
        }
      };
      const callback = (err, value) => {
        if (err !== null && err !== undefined) complete(err, undefined, true);
        else complete(null, value, false);
      };
      context.done = callback;
      context.succeed = (value) => complete(null, value, false);
      context.fail = (err) => complete(err === undefined || err === null ? new Error('context.fail') : err, undefined, true);
      this.inflight = { fail: (err) => settle(err, undefined, true) };
      let returned;
      try {
        returned = this.handler(message.event === undefined ? null : message.event, context, callback);
      } catch (err) {
        settle(err, undefined, true);
        return;
      }
      if (returned && typeof returned.then === 'function') {
        // An async handler: its promise is the answer, whatever the event loop still holds.
        returned.then(
          (value) => settle(null, value, false),
          (err) => settle(err, undefined, true),
        );
      } else if (this.handler.length < 3 && isPlainValue(returned)) {
        settle(null, returned, false);
      } else if (!called) {
        // Nothing returned and nothing called yet: the answer is whatever the callback is
        // given, or null once the event loop is empty.
        if (this.channel.canUnref()) this.waitForEmptyLoop(() => settle(null, null, false));
        else if (this.handler.length < 3) settle(null, null, false);
      }
    });
  }

  waitForEmptyLoop(then) {
    this.onEmptyLoop = then;
    this.channel.unref();
  }

  stopWaitingForEmptyLoop() {
    if (this.onEmptyLoop === null) return;
    this.onEmptyLoop = null;
    this.channel.ref();
  }

  // process 'beforeExit': nothing but the (unref'd) channel is left in the event loop.
  emptyLoop() {
    const then = this.onEmptyLoop;
    if (then === null) return;
    this.stopWaitingForEmptyLoop();
    then();
  }

  // An uncaught exception or unhandled rejection: it fails the invocation in flight, if any.
  onAsyncError(err) {
    if (this.inflight) {
      this.inflight.fail(err);
      return;
    }
    const payload = errorPayload(err);
    this.logs.write('stderr', `Uncaught ${payload.type}: ${payload.message}\n`);
    for (const line of payload.stack.slice(1)) this.logs.write('stderr', line + '\n');
  }
}

async function main() {
  const config = readConfig(process.env);
  if (!config.controlFd) fatal('STRATUS_CONTROL_FD is not set', 2);
  let channel;
  try {
    channel = new Channel(config.controlFd);
  } catch (err) {
    fatal(err.message, 2);
    return;
  }
  const logs = new LogCapture(channel);
  logs.install();
  const bootstrap = new Bootstrap(config, channel, logs);
  process.on('uncaughtException', (err) => bootstrap.onAsyncError(err));
  process.on('unhandledRejection', (err) => bootstrap.onAsyncError(err));
  process.on('beforeExit', () => bootstrap.emptyLoop());
  if (!(await bootstrap.init())) return;
  channel.start(
    (message) => bootstrap.enqueue(message),
    () => bootstrap.enqueue(null),
  );
}

main().catch((err) => fatal(`fatal error\n${(err && err.stack) || err}`, 3));
