(function () {
  var button = document.getElementById("theme-toggle");
  if (!button) { return; }
  button.hidden = false;
  button.addEventListener("click", function () {
    var root = document.documentElement;
    var prefersDark = !!(window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches);
    var dark = root.classList.contains("dark") || (!root.classList.contains("light") && prefersDark);
    root.classList.remove("dark", "light");
    root.classList.add(dark ? "light" : "dark");
  });
})();
