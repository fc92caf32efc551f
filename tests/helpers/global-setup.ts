import { buildUi, uiBuildIsCurrent } from '../../scripts/build-ui.js';

/**
 * Before any test file: the web page built from ui/ as it stands (dist/ui), once, so every server
 * a test starts serves the same files and none of them builds its own.
 */
export default async function setup() {
  if (!uiBuildIsCurrent()) await buildUi();
}
