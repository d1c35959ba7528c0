/**
 * What a JSON body's headers say about its bytes that the parser cannot take: this server reads a body as UTF-8 JSON
 * (RFC 8259's only encoding) and decompresses nothing, so a gzip body or a UTF-16 one was answered "not valid JSON:
 * Unexpected token '\u001f'", and a body declared UTF-16 but sent as UTF-8 was taken, as if the client had said nothing.
 */

/** Charsets read as UTF-8 as they are (US-ASCII is a subset). */
const UTF8 = new Set(['utf-8', 'utf8', 'us-ascii']);

/** A refusal of the body's encoding (415), or undefined when the body may be read as UTF-8 JSON. */
export function bodyEncodingProblem(headers: {
  'content-encoding'?: string;
  'content-type'?: string;
}): { code: 'unsupported_content_encoding' | 'unsupported_charset'; message: string } | undefined {
  const encoding = headers['content-encoding']?.trim();
  if (encoding && encoding.toLowerCase() !== 'identity')
    return {
      code: 'unsupported_content_encoding',
      message: `the body is sent with Content-Encoding: ${cut(encoding)}, which this server does not take: send the JSON uncompressed (no Content-Encoding header)`,
    };
  const charset = /;\s*charset\s*=\s*(?:"([^"]*)"|([^;\s]*))/i.exec(headers['content-type'] ?? '');
  const name = charset ? (charset[1] ?? charset[2] ?? '') : undefined;
  if (name !== undefined && !UTF8.has(name.toLowerCase()))
    return {
      code: 'unsupported_charset',
      message: `the body is declared charset=${cut(name)}; this server reads JSON as UTF-8 only (RFC 8259): send it as UTF-8, with Content-Type: application/json or application/json; charset=utf-8`,
    };
  return undefined;
}

/** A header's value named in a message, bounded (headers may be 16 KiB). */
const cut = (v: string) => (v.length > 40 ? `${v.slice(0, 40)}…` : v);
