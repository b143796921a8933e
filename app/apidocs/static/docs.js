// Starts Swagger UI on the relay's OpenAPI document. A file of its own rather than an inline
// script, so the page's Content-Security-Policy allows scripts from the relay only.
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  // no badge fetched from the public validator service
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
});
