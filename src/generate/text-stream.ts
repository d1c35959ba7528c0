/**
 * Turns one row's generated token ids into text deltas for streaming, and finds stop strings.
 * The whole output is decoded each time (a token's bytes can complete a character only together with
 * the next token's), text ending in an incomplete UTF-8 sequence (U+FFFD) is held back, and so is any
 * tail that could still grow into a stop string, so no client ever sees a stop string or half of one.
 */
export class TextStream {
  private emitted = 0;
  private readonly maxStop: number;
  /** Final text once a stop string was found (cut before it). */
  stoppedText: string | null = null;

  constructor(
    private readonly decode: (ids: number[]) => string,
    private readonly stops: readonly string[],
  ) {
    this.maxStop = stops.reduce((m, s) => Math.max(m, s.length), 0);
  }

  /** After a token was appended to `ids`: the text that is now safe to show (may be ''). */
  push(ids: number[]): string {
    const full = this.decode(ids);
    if (this.stops.length > 0) {
      // A new stop string can only end in the new text, so search from just before it.
      const from = Math.max(0, this.emitted - this.maxStop);
      let at = -1;
      for (const s of this.stops) {
        const i = full.indexOf(s, from);
        if (i >= 0 && (at < 0 || i < at)) at = i;
      }
      if (at >= 0) {
        this.stoppedText = full.slice(0, at);
        return this.take(this.stoppedText, this.stoppedText.length);
      }
    }
    let safe = full.length;
    if (full.endsWith('\uFFFD')) safe--;
    safe -= this.pendingStopPrefix(full.slice(0, safe));
    return this.take(full, safe);
  }

  /** At the end (EOS, length or cancelled): everything not yet shown. */
  flush(ids: number[]): string {
    const full = this.final(ids);
    return this.take(full, full.length);
  }

  /**
   * The whole text at the end. Output cut at a token limit (or stopped) can end inside a character,
   * whose bytes decode to U+FFFD: that half character is left out, as it was held back while
   * streaming. (A U+FFFD the model wrote whole, as the bytes EF BF BD, cannot be told from it in the
   * decoded text; it is left out too when it is the last character.)
   */
  final(ids: number[]): string {
    if (this.stoppedText !== null) return this.stoppedText;
    const full = this.decode(ids);
    return full.endsWith('\uFFFD') ? full.slice(0, -1) : full;
  }

  private take(full: string, upTo: number): string {
    if (upTo <= this.emitted) return '';
    const delta = full.slice(this.emitted, upTo);
    this.emitted = upTo;
    return delta;
  }

  /** Length of the longest tail of `text` that is a proper prefix of a stop string. */
  private pendingStopPrefix(text: string): number {
    let best = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, text.length); n > best; n--) {
        if (text.endsWith(s.slice(0, n))) {
          best = n;
          break;
        }
      }
    }
    return best;
  }
}
