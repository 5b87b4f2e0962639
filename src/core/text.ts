/** Text cut to `max` characters, the last one an ellipsis when something was cut. */
export function shorten(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
