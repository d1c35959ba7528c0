/**
 * Labels that are one class written differently: in case or surrounding spaces ("ham", "Ham", "ham "), one number
 * in two forms ("1", "1.0", "01"), or in two Unicode normal forms ("café" with é as one code point, U+00E9, or as "e"
 * and a combining U+0301, as macOS file names and some input methods store it: the two print alike). pandas writes a whole-number column that holds a missing value as floats, so one
 * export's `1` is another's `1.0`; read as text, each spelling would be a class of its own, and beside declared labels
 * every row of the other spelling would be quarantined.
 */

/** A decimal number as a label may hold it: no exponent, no thousands separator (those are as likely codes as numbers). */
const DECIMAL = /^[+-]?\d+(\.\d+)?$/;

export function isNumberLabel(label: string): boolean {
  return DECIMAL.test(label.trim());
}

/**
 * "+01.50" → "1.5", "-0.0" → "0": the number's digits without sign noise, leading or trailing zeros (exact, no float).
 * `keepLeadingZeros`: "01" stays "01" (and "01.0" is "01"), since a label written with leading zeros is a code more
 * often than a number ("01" and "1" as two ZIP-like codes), and no tool writes a number so: pandas' floats only add ".0".
 */
export function canonicalNumber(label: string, opts: { keepLeadingZeros?: boolean } = {}): string {
  const t = label.trim();
  const negative = t.startsWith('-');
  const [whole, fraction = ''] = t.replace(/^[+-]/, '').split('.');
  const digits = opts.keepLeadingZeros ? whole! : whole!.replace(/^0+(?=\d)/, '');
  const decimals = fraction.replace(/0+$/, '');
  const n = decimals === '' ? digits : `${digits}.${decimals}`;
  return negative && n !== '0' ? `-${n}` : n;
}

/** What spellings of one class share: the number it writes, else its text in NFC, trimmed and case-folded. */
export function labelKey(label: string): string {
  return isNumberLabel(label) ? `number:${canonicalNumber(label)}` : `text:${label.normalize('NFC').trim().toLowerCase()}`;
}

/**
 * A label as a JSON string with every character outside printable ASCII escaped (`"cafe\u0301"`, `"caf\u00e9"`), so
 * that spellings which differ in Unicode normalisation alone show the difference. Still a JSON string, and a YAML
 * double-quoted one, that reads back as the label: a labelMap key written so matches the rows' bytes.
 */
export function escapedLabel(label: string): string {
  return JSON.stringify(label).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** A label and the one it is written differently for, quoted, both escaped when either is not in NFC (they may print alike). */
export function quotedPair(label: string, meant: string): [string, string] {
  const q = label.normalize('NFC') !== label || meant.normalize('NFC') !== meant ? escapedLabel : JSON.stringify;
  return [q(label), q(meant)];
}

/** The declared label that `label` is another spelling of, if any (for a hint to map it rather than lose its rows). */
export function declaredSpelling(label: string, declared: readonly string[]): string | undefined {
  // Two declared labels may differ in case alone ("b", "B"): a row's "B " is "B" with a space, not "b".
  const trimmed = label.trim();
  const exact = declared.find((d) => d !== label && d === trimmed);
  if (exact !== undefined) return exact;
  // Then one that is the same text in another Unicode normal form, before one equal case-folded ("Café", "café").
  const nfc = trimmed.normalize('NFC');
  const normalised = declared.find((d) => d !== label && d.normalize('NFC') === nfc);
  if (normalised !== undefined) return normalised;
  const key = labelKey(label);
  return declared.find((d) => d !== label && labelKey(d) === key);
}
