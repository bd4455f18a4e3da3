// Loaded between require.js and embed-amd.js on pages with embedded ipywidgets
// (nb_ipywidgets_js in _config.yml); served as _static/widgets-setup.js.
(function () {
  // 1. embed-amd.js loads its fonts from the directory of the URL that requirejs
  //    gives its module, "@jupyter-widgets/html-manager/dist/…". Unmapped, that is
  //    relative to the page (and 404s); map it to the vendored _static/widgets/.
  var widgets = new URL("widgets", document.currentScript.src).href;
  require.config({paths: {"@jupyter-widgets/html-manager/dist": widgets}});

  // 2. ipywidgets 8 typesets widget labels with the MathJax 2 API
  //    (MathJax.Hub.Queue); the book has MathJax 3, where that throws
  //    "Cannot read properties of undefined (reading 'Queue')". Provide the call.
  document.addEventListener("DOMContentLoaded", function () {
    var mj = window.MathJax;
    if (mj && mj.startup && !mj.Hub) {
      mj.Hub = {
        Queue: function (job) {
          mj.startup.promise.then(function () { return mj.typesetPromise([job[2]]); });
        },
      };
    }
  });
})();
