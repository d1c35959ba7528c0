// The failure converter of every tempered client and worker that has TEMPERED_PAYLOAD_KEY (infra/payload-codec.ts
// names this file as the data converter's failureConverterPath only then). A failure's message and stack trace are
// fields of the Failure proto, not payloads, so the payload codec never sees them and they stayed in the history in
// clear, quoting whatever a stage's error quoted (a bad row's fields, a path). With encodeCommonAttributes the SDK moves
// both into `encodedAttributes`, a payload the codec encrypts, and leaves the message "Encoded failure".
//
// CommonJS, not TypeScript: the SDK loads it with require() in the client and for the worker's activities
// (loadDataConverter), and webpack bundles it into the workflow sandbox (bundleWorkflowCode's failureConverterPath);
// neither goes through tsx.
'use strict';
const { DefaultFailureConverter } = require('@temporalio/common');

exports.failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });
