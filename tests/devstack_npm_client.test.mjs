// The dev stack through the real `openwhisk` npm client (3.21.9, pinned in package.json), run by
// node's own test runner: `node --test tests/devstack_npm_client.test.mjs` with
//   WSK_APIHOST        the stack, e.g. http://127.0.0.1:3233
//   WSK_AUTH           guest's key (uuid:secret)
//   WSK_AUTH_OTHER     the key of a second namespace, "other"
//   WSK_LIMITS         JSON: the stack's maxima {"timeout": ms, "memory": MB, "logs": MB, "concurrency": n}
// tests/test_devstack_npm_client.py starts a stack, sets them and runs this file.
//
// Expected values are OpenWhisk's (apache/openwhisk 1fae641a2); the npm client turns any status of
// 400 or more into an OpenWhiskError whose `statusCode` is the status, `error` the body and
// `message` the body's `error` (client.js L247-278). The client never sends `timeout` or
// `result=true` (actions.js L28): the blocking time-out's 202 is tested from Python.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import openwhisk from 'openwhisk'

function setting (name) {
  const value = process.env[name]
  assert.ok(value, `${name} is not set (tests/test_devstack_npm_client.py sets it)`)
  return value
}

const apihost = setting('WSK_APIHOST')
const ow = openwhisk({ apihost, api_key: setting('WSK_AUTH') })
const theirs = openwhisk({ apihost, api_key: setting('WSK_AUTH_OTHER') })
const maxima = JSON.parse(setting('WSK_LIMITS'))
const KIND = 'python:3-ml'
// A trivial OpenWhisk Python action (the runtime runs any): `print` gives a log line.
const HELLO = `
def main(args):
    name = args.get("name", "stranger")
    print("hello", name)
    if args.get("fail"):
        return {"error": "failed for " + name}
    return {"greeting": args.get("greeting", "hello") + " " + name}
`
const NOT_FOUND = 'The requested resource does not exist.'
const MALFORMED = 'The request content was malformed:\n'
const unique = prefix => `${prefix}-${randomUUID().slice(0, 8)}`
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

// The call must fail with OpenWhisk's status and error text (a string: exact; a RegExp: matched).
async function rejects (call, statusCode, text) {
  await assert.rejects(call, error => {
    assert.equal(error.name, 'OpenWhiskError')
    assert.equal(error.statusCode, statusCode, error.message)
    const said = error.error && error.error.error
    if (text instanceof RegExp) assert.match(said, text)
    else assert.equal(said, text)
    assert.equal(typeof error.error.code, 'string') // the request id, in every error body
    assert.ok(error.message.includes(`Returned HTTP ${statusCode}`), error.message)
    return true
  })
}

// Polls `fetch` until it stops answering 404 (activations are stored when they end) or `ready` holds.
async function eventually (fetch, ready = () => true, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      const found = await fetch()
      if (ready(found)) return found
    } catch (error) {
      if (error.statusCode !== 404) throw error
    }
    assert.ok(Date.now() < deadline, `nothing after ${timeoutMs} ms`)
    await sleep(200)
  }
}

const annotations = doc => Object.fromEntries(doc.annotations.map(a => [a.key, a.value]))

// One action serves the flow tests, in order: created, read, updated, listed, invoked, deleted.
const name = unique('hello')

test('namespaces: only the caller\'s own', async () => {
  assert.deepEqual(await ow.namespaces.list(), ['guest'])
  assert.deepEqual(await theirs.namespaces.list(), ['other'])
})

test('create: OpenWhisk\'s document, version 0.0.1, defaults and the controller\'s annotations', async () => {
  const created = await ow.actions.create({ name, action: HELLO, kind: KIND })
  assert.equal(created.namespace, 'guest')
  assert.equal(created.name, name)
  assert.equal(created.version, '0.0.1')
  assert.equal(created.publish, false)
  assert.deepEqual(created.exec, { kind: KIND, code: HELLO, binary: false })
  assert.deepEqual(created.limits, { timeout: 60000, memory: 256, logs: 10, concurrency: 1 })
  assert.deepEqual(annotations(created), { 'provide-api-key': false, exec: KIND })
  assert.deepEqual(created.parameters, [])
  assert.equal(typeof created.updated, 'number')
})

test('get: with code, and with code=false', async () => {
  const action = await ow.actions.get({ name })
  assert.equal(action.exec.code, HELLO)
  const meta = await ow.actions.get({ name, code: false })
  assert.deepEqual(meta.exec, { kind: KIND, binary: false })
  assert.equal(meta.version, action.version)
})

test('create without overwrite on an existing name: 409', async () => {
  await rejects(ow.actions.create({ name, action: HELLO, kind: KIND }), 409, 'resource already exists')
})

test('update: version bumped, parameters replaced, limits merged', async () => {
  const updated = await ow.actions.update({
    name, action: HELLO, kind: KIND, params: { greeting: 'hi' }, limits: { memory: 300 }
  })
  assert.equal(updated.version, '0.0.2')
  assert.deepEqual(updated.parameters, [{ key: 'greeting', value: 'hi' }])
  assert.deepEqual(updated.limits, { timeout: 60000, memory: 300, logs: 10, concurrency: 1 })
  assert.deepEqual(annotations(updated), { 'provide-api-key': false, exec: KIND })
  assert.equal((await ow.actions.get({ name })).version, '0.0.2')
})

test('list: newest first, limit, skip, count', async () => {
  const names = [unique('list0'), unique('list1'), unique('list2')]
  for (const listed of names) {
    await ow.actions.create({ name: listed, action: HELLO, kind: KIND })
    await sleep(10) // distinct `updated` stamps
  }
  const newest = [...names].reverse()
  assert.deepEqual((await ow.actions.list({ limit: 3 })).map(a => a.name), newest)
  assert.deepEqual((await ow.actions.list({ limit: 1, skip: 1 })).map(a => a.name), [newest[1]])
  const [summary] = await ow.actions.list({ limit: 1 })
  assert.deepEqual(summary.exec, { binary: false }) // summaries: no code, no parameters
  assert.equal(summary.parameters, undefined)
  const { actions: total } = await ow.actions.list({ count: true })
  assert.ok(total >= 4, `count ${total}`)
  assert.equal((await ow.actions.list({ limit: 0 })).length, Math.min(total, 200))
  await rejects(ow.actions.list({ limit: 201 }), 400,
    'The query parameter \'limit\' was malformed:\nThe value \'201\' is not in the range of 0 to 200 for actions.')
  for (const listed of names) await ow.actions.delete({ name: listed })
})

test('invoke blocking: the result, and the full record', async () => {
  const result = await ow.actions.invoke({ name, blocking: true, result: true, params: { name: 'ada' } })
  assert.deepEqual(result, { greeting: 'hi ada' })
  const record = await ow.actions.invoke({ name, blocking: true, params: { name: 'bob' } })
  assert.match(record.activationId, /^[0-9a-f]{32}$/)
  assert.equal(record.namespace, 'guest')
  assert.equal(record.name, name)
  assert.equal(record.version, '0.0.2')
  assert.equal(record.response.success, true)
  assert.equal(record.response.status, 'success')
  assert.deepEqual(record.response.result, { greeting: 'hi bob' })
  assert.equal(record.duration, record.end - record.start)
  const marks = annotations(record)
  assert.equal(marks.path, `guest/${name}`)
  assert.equal(marks.kind, KIND)
  assert.equal(marks.timeout, false)
  assert.equal(typeof marks.waitTime, 'number')
  const stored = await ow.activations.get({ activationId: record.activationId })
  assert.deepEqual(stored.response, record.response)
})

test('invoke blocking, application error: the client rejects with 502 and the action\'s error', async () => {
  await assert.rejects(ow.actions.invoke({ name, blocking: true, result: true, params: { name: 'x', fail: true } }),
    error => {
      assert.equal(error.statusCode, 502)
      assert.equal(error.error.response.status, 'application error')
      assert.ok(error.message.endsWith('--> "failed for x"'), error.message)
      return true
    })
})

test('invoke non-blocking, then the activation, its result and its logs', async () => {
  const accepted = await ow.actions.invoke({ name, params: { name: 'eve' } })
  assert.deepEqual(Object.keys(accepted), ['activationId'])
  const activationId = accepted.activationId
  const record = await eventually(() => ow.activations.get({ activationId }))
  assert.equal(record.activationId, activationId)
  assert.deepEqual(record.response.result, { greeting: 'hi eve' })
  const result = await ow.activations.result({ activationId })
  assert.deepEqual(result, { result: { greeting: 'hi eve' }, size: record.response.size, success: true, status: 'success' })
  // Logs come after the result, once both streams' sentinels are read.
  const { logs } = await eventually(() => ow.activations.logs({ activationId }), found => found.logs.length > 0)
  assert.equal(logs.length, 1)
  assert.match(logs[0], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z\s* stdout: hello eve$/)
  const listed = await ow.activations.list({ name, limit: 5 })
  assert.equal(listed[0].activationId, activationId) // newest first
  assert.equal(listed[0].statusCode, 0)
  assert.equal(listed[0].response, undefined) // summaries
  const docs = await ow.activations.list({ name, limit: 1, docs: true })
  assert.deepEqual(docs[0].response.result, { greeting: 'hi eve' })
  assert.deepEqual(await ow.activations.list({ name, count: true }), { activations: 4 })
})

test('401: a wrong key, an unknown key, no key, no Basic credentials', async () => {
  const invalid = 'The supplied authentication is invalid'
  const [uuid, secret] = setting('WSK_AUTH').split(':')
  const wrongSecret = openwhisk({ apihost, api_key: `${uuid}:${secret.slice(0, -1)}${secret.endsWith('a') ? 'b' : 'a'}` })
  await rejects(wrongSecret.actions.list(), 401, invalid)
  await rejects(openwhisk({ apihost, api_key: `${randomUUID()}:${secret}` }).actions.get({ name }), 401, invalid)
  // The client insists on a key unless an auth handler makes the header: none, or not Basic.
  const missing = 'The resource requires authentication, which was not supplied with the request'
  const keyless = openwhisk({ apihost, auth_handler: { getAuthHeader: async () => '' } })
  await rejects(keyless.actions.list(), 401, missing)
  const bearer = openwhisk({ apihost, auth_handler: { getAuthHeader: async () => `Bearer ${secret}` } })
  await rejects(bearer.actions.invoke({ name }), 401, missing)
})

test('403: another namespace\'s action and lists', async () => {
  const other = unique('theirs')
  await theirs.actions.create({ name: other, action: HELLO, kind: KIND })
  const denied = `The supplied authentication is not authorized to access 'other/${other}'.`
  await rejects(ow.actions.get({ name: `/other/${other}` }), 403, denied)
  await rejects(ow.actions.invoke({ name: `/other/${other}`, blocking: true }), 403, denied)
  await rejects(ow.actions.delete({ name: `/other/${other}` }), 403, denied)
  await rejects(ow.actions.list({ namespace: 'other' }), 403,
    'The supplied authentication is not authorized to access \'other\'.')
  assert.equal((await theirs.actions.get({ name: other })).namespace, 'other') // still there
})

test('404: a missing action, a missing activation', async () => {
  const missing = unique('missing')
  await rejects(ow.actions.get({ name: missing }), 404, NOT_FOUND)
  await rejects(ow.actions.invoke({ name: missing, blocking: true }), 404, NOT_FOUND)
  await rejects(ow.actions.delete({ name: missing }), 404, NOT_FOUND)
  await rejects(ow.activations.get({ activationId: '0'.repeat(32) }), 404, NOT_FOUND)
  await rejects(ow.activations.logs({ activationId: '0'.repeat(32) }), 404, NOT_FOUND)
  await rejects(ow.activations.get({ activationId: 'abc' }), 400, 'Activation id length is 3 but must be 32.')
})

test('400: limits above the maximum, with OpenWhisk\'s texts', async () => {
  const limited = unique('limits')
  const cases = [
    [{ memory: maxima.memory + 1 }, `memory size ${maxima.memory + 1} MB exceeds allowed threshold of ${maxima.memory} MB`],
    [{ timeout: maxima.timeout + 1 }, `duration ${maxima.timeout + 1} milliseconds exceeds allowed threshold of ${maxima.timeout} milliseconds`],
    [{ logs: maxima.logs + 1 }, `log size ${maxima.logs + 1} MB exceeds allowed threshold of ${maxima.logs} MB`],
    [{ concurrency: maxima.concurrency + 1 }, `concurrency ${maxima.concurrency + 1} exceeds allowed threshold of ${maxima.concurrency}`],
    [{ memory: 64 }, 'memory size 64 MB below allowed threshold of 128 MB']
  ]
  for (const [limits, text] of cases) {
    await rejects(ow.actions.create({ name: limited, action: HELLO, kind: KIND, limits }), 400, text)
  }
  await rejects(ow.actions.get({ name: limited }), 404, NOT_FOUND) // nothing was made
})

test('400: an unknown kind, malformed content, malformed JSON', async () => {
  const bad = unique('bad')
  await rejects(ow.actions.create({ name: bad, action: HELLO, kind: 'cobol:85' }), 400,
    /^The request content was malformed:\nThe specified runtime 'cobol:85' is not supported by this platform\. Valid values are: '.+'\.$/)
  // An object `action` is sent as the body itself (actions.js L107-110).
  await rejects(ow.actions.create({ name: bad, action: { exec: { kind: KIND, code: HELLO }, limits: { memory: 'big' } } }),
    400, `${MALFORMED}memory limit malformed`)
  await rejects(ow.actions.create({ name: bad, action: { exec: 'python' } }), 400, /^The request content was malformed:\n/)
  // The client serializes what it is given, so a JSON syntax error goes through its own request
  // function with a Buffer, which needle sends as it is (as application/json).
  await rejects(ow.actions.client.request('PUT', `namespaces/_/actions/${bad}`, { body: Buffer.from('{"exec": {') }),
    400, /^The request content was malformed:\n.+/s)
  await rejects(ow.actions.client.request('POST', `namespaces/_/actions/${name}`, { body: Buffer.from('[1, 2]') }),
    400, `${MALFORMED}JSON object expected`)
})

test('413: an invoke payload over 1 MiB', async () => {
  const params = { blob: 'x'.repeat(1024 * 1024) }
  const size = Buffer.byteLength(JSON.stringify(params))
  await rejects(ow.actions.invoke({ name, params }), 413, `Request larger than allowed: ${size} > 1048576 bytes.`)
  await rejects(ow.actions.invoke({ name, params, blocking: true, result: true }), 413,
    `Request larger than allowed: ${size} > 1048576 bytes.`)
})

test('delete: the deleted document, then 404', async () => {
  const current = await ow.actions.get({ name })
  const deleted = await ow.actions.delete({ name })
  assert.deepEqual(deleted, current)
  await rejects(ow.actions.get({ name }), 404, NOT_FOUND)
  await rejects(ow.actions.delete({ name }), 404, NOT_FOUND)
})
