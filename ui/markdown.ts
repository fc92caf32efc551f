import DOMPurify from 'dompurify';
import { Marked } from 'marked';

/*
 * A message is untrusted text: whatever it says, nothing in it may run. Markdown is turned into
 * HTML by marked, with raw HTML in the text shown as text (not markup) and images shown as links
 * (an image would fetch a URL the moment it shows: a tracking pixel), then DOMPurify keeps only
 * harmless markup: no script, no on* handler, no javascript: or data: URL, no style, no form.
 * The page's Content-Security-Policy (no inline script, nothing from elsewhere) is a second wall.
 */

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const marked = new Marked({
  gfm: true,
  breaks: true,
  async: false,
  renderer: {
    html: ({ text }) => escapeHtml(text),
    image: ({ href, text }) => `<a href="${escapeHtml(href)}">${escapeHtml(text || href)}</a>`,
  },
});

const purify = DOMPurify();
// Links open in a new tab that cannot reach back to this page, and say nothing of where it came from.
purify.addHook('afterSanitizeAttributes', (node) => {
  if (node.tagName === 'A' && node.hasAttribute('href')) {
    node.setAttribute('target', '_blank');
    node.setAttribute('rel', 'noopener noreferrer nofollow');
  }
});

const POLICY = {
  FORBID_TAGS: ['style', 'form', 'input', 'button', 'textarea', 'select', 'img', 'svg', 'math', 'iframe', 'object', 'embed', 'video', 'audio'],
  FORBID_ATTR: ['style', 'srcset', 'id', 'name'],
  // http(s), mailto and relative links only.
  ALLOWED_URI_REGEXP: /^(?:(?:https?|mailto):|[^a-z]|[a-z+.-]+(?:[^a-z+.\-:]|$))/i,
};

/** The message as safe DOM nodes, ready to insert. */
export function renderMarkdown(text: string): DocumentFragment {
  const html = marked.parse(text) as string;
  return purify.sanitize(html, { ...POLICY, RETURN_DOM_FRAGMENT: true });
}
