// `npm run build` (and the image build) run this after tsc: the pages'
// scripts and styles bundled into dist/web/assets/, for an image without src/.
import { writeAssets } from './assets.js';

const names = await writeAssets();
console.log(`web assets written: ${names.join(', ')}`);
