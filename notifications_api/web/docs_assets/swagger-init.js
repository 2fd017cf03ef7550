/* Starts Swagger UI on /docs from the settings the page carries as JSON data (no inline script: the
   page's CSP runs only this origin's files). With the web inbox demo on (ENABLE_UI_DEMO, development
   only), the settings name the demo token endpoint: once the document is loaded, a token for the demo
   user is fetched from it and set on the user JWT's scheme (Authorize shows it), so "Try it out" works
   at once. The page itself never holds a token (a cached copy carries none), and the service token is
   never set. */
(() => {
  "use strict";
  const settings = JSON.parse(document.getElementById("swagger-ui-settings").textContent);
  const config = Object.assign({
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
  }, settings.config);
  const demo = settings.preauthorize;
  if (demo) {
    config.onComplete = async () => {
      try {
        const response = await fetch(demo.token_url, { method: "POST", cache: "no-store" });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        window.ui.preauthorizeApiKey(demo.scheme, (await response.json()).token);
      } catch (error) {
        console.warn(`Swagger UI: no demo token from ${demo.token_url} (${error.message}); use Authorize`);
      }
    };
  }
  window.addEventListener("load", () => { window.ui = SwaggerUIBundle(config); });
})();
