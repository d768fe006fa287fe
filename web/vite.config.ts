// The dashboard's build (issue #20): served by the api under /app/, so
// every asset URL starts there. No inline script or style reaches
// index.html (the api's CSP allows its own files only).
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/app/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    sourcemap: false,
  },
});
