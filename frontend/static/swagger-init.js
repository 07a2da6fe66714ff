// /api/v1/docs/: starts Swagger UI as drf-spectacular's swagger_ui.js does, reading what the
// template used to inline from data attributes of #swagger-ui (templates/drf_spectacular/
// swagger_ui.html), so the page needs no inline script under the console's CSP.
(function () {
  "use strict";
  const root = document.getElementById("swagger-ui");
  const data = root.dataset;
  const parse = (text, fallback) => (text ? JSON.parse(text) : fallback);
  const swaggerSettings = parse(data.settings, {});
  const oauth2Config = parse(data.oauth2Config, {});
  const schemaAuthNames = parse(data.schemaAuthNames, []);
  let schemaAuthFailed = false;
  let ui = null;
  const plugins = [];

  const reloadSchemaOnAuthChange = () => {
    const reload = (ori) => (...args) => {
      schemaAuthFailed = false;
      setTimeout(() => ui.specActions.download());
      return ori(...args);
    };
    return {
      statePlugins: { auth: { wrapActions: { authorizeOauth2: reload, authorize: reload, logout: reload } } },
    };
  };
  if (schemaAuthNames.length > 0) plugins.push(reloadSchemaOnAuthChange);

  const isSchemaUrl = (url) => ui !== null && url === new URL(ui.getConfigs().url, document.baseURI).href;

  const responseInterceptor = (response) => {
    if (!response.ok && isSchemaUrl(response.url) && !schemaAuthFailed) {
      // Retry once without credentials, as drf-spectacular does.
      console.warn(`schema request received '${response.status}'. disabling credentials for schema till logout.`);
      schemaAuthFailed = true;
      setTimeout(() => ui.specActions.download());
    }
    return response;
  };

  const injectAuthCredentials = (request) => {
    let authorized;
    if (ui !== null) {
      const state = ui.getState().get("auth").get("authorized");
      if (state !== undefined && Object.keys(state.toJS()).length !== 0) authorized = state.toJS();
    } else if (![undefined, "{}"].includes(localStorage.authorized)) {
      authorized = JSON.parse(localStorage.authorized);
    }
    if (authorized === undefined) return;
    for (const authName of schemaAuthNames) {
      const authDef = authorized[authName];
      if (authDef === undefined || authDef.schema === undefined) continue;
      if (authDef.schema.type === "http" && authDef.schema.scheme === "bearer") {
        request.headers.Authorization = `Bearer ${authDef.value}`;
        return;
      }
      if (authDef.schema.type === "http" && authDef.schema.scheme === "basic") {
        request.headers.Authorization = `Basic ${btoa(`${authDef.value.username}:${authDef.value.password}`)}`;
        return;
      }
      if (authDef.schema.type === "apiKey" && authDef.schema.in === "header") {
        request.headers[authDef.schema.name] = authDef.value;
        return;
      }
      if (authDef.schema.type === "oauth2" && authDef.token.token_type === "Bearer") {
        request.headers.Authorization = `Bearer ${authDef.token.access_token}`;
        return;
      }
    }
  };

  const requestInterceptor = (request) => {
    if (request.loadSpec && schemaAuthNames.length > 0 && !schemaAuthFailed) {
      try {
        injectAuthCredentials(request);
      } catch (e) {
        console.error("schema auth injection failed with error: ", e);
      }
    }
    // The session's CSRF token on unsafe requests to this origin (the browser's way in).
    if (!["GET", undefined].includes(request.method) && request.credentials === "same-origin") {
      request.headers[data.csrfHeader] = data.csrfToken;
    }
    return request;
  };

  ui = SwaggerUIBundle({
    url: data.schemaUrl,
    dom_id: "#swagger-ui",
    presets: [SwaggerUIBundle.presets.apis],
    plugins,
    layout: "BaseLayout",
    validatorUrl: null, // no badge fetched from validator.swagger.io (the CSP allows 'self' only)
    requestInterceptor,
    responseInterceptor,
    ...swaggerSettings,
  });
  if (Object.keys(oauth2Config).length > 0) ui.initOAuth(oauth2Config);
})();
