import { InputError } from '../errors.ts';

/**
 * An InputError about a model, alias, gate or page limit whose message names that thing already ("model 'clf' has no
 * version or alias '99'"): `where` stays for callers that tell the kinds apart (`where === 'model'`: not found), but
 * the message is not prefixed with it, which read "model: model 'clf' …".
 */
export class NamedRefusal extends InputError {
  override readonly where: string;
  constructor(message: string, opts: { where: string; hint?: string }) {
    super(message, { hint: opts.hint });
    this.where = opts.where;
  }
}
