// Screening a draft while the patient types: one `screen` request after they pause, and only
// the answer for what the box holds now is shown (an older reply arriving late is dropped).

export const SCREEN_DELAY_MS = 500; // the spec asks for at least 400 ms between requests

export class Screener {
  /**
   * @param {object} o
   * @param {(text: string) => Promise<{findings: object[], redacted: string}>} o.request sends `screen`
   * @param {(result: {text: string, findings: object[], redacted: string} | null) => void} o.onResult
   *   null when the box is empty or the last request failed (then no warning is better than a stale one)
   */
  constructor({ request, onResult, delayMs = SCREEN_DELAY_MS }) {
    this.request = request;
    this.onResult = onResult;
    this.delayMs = delayMs;
    this.timer = null;
    this.current = '';   // the text whose answer we want
    this.shown = null;   // the text whose answer is on screen
  }

  /** The box changed. */
  input(text) {
    clearTimeout(this.timer);
    this.current = text.trim();
    if (!this.current) {
      this.shown = null;
      this.onResult(null);
      return;
    }
    if (this.current === this.shown) return;
    this.timer = setTimeout(() => this.run(this.current), this.delayMs);
  }

  /** Screen now (before sending, or after the connection came back). */
  flush() {
    clearTimeout(this.timer);
    if (this.current && this.current !== this.shown) return this.run(this.current);
    return Promise.resolve();
  }

  async run(text) {
    let reply;
    try {
      reply = await this.request(text);
    } catch {
      reply = null;
    }
    if (text !== this.current) return; // typed on meanwhile: a newer request is coming
    if (!reply) {
      this.shown = null;
      this.onResult(null);
      return;
    }
    this.shown = text;
    this.onResult({ text, findings: reply.findings || [], redacted: reply.redacted || text });
  }

  stop() {
    clearTimeout(this.timer);
  }
}
