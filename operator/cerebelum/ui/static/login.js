"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const m = document.cookie.match(/(?:^|; )cerebelum_csrf=([^;]+)/);
  document.getElementById("csrf").value = m ? decodeURIComponent(m[1]) : "";
  if (location.search.includes("error=1")) document.getElementById("login-error").hidden = false;
});
