import { defineConfig } from "vite";

// The built UI is Python package data: `modelreg serve` serves it with no Node at run time.
export default defineConfig({
  build: {
    outDir: "../../services/server/modelreg_server/web_assets",
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 1024,
  },
  server: {
    // `npm run dev` next to `modelreg serve`: grpc-web and downloads go to its gateway.
    proxy: {
      "^/modelreg\\.": "http://127.0.0.1:8080",
      "/download": "http://127.0.0.1:8080",
      "/whoami": "http://127.0.0.1:8080",
    },
  },
});
