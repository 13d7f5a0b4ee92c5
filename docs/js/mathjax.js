// MathJax reads the \( \) and \[ \] spans that pymdownx.arithmatex (generic mode) writes, and
// nothing else on the page; Material's instant navigation swaps pages without a reload, so each
// new page is typeset again.
window.MathJax = {
  tex: { inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]], processEscapes: true, processEnvironments: true },
  options: { ignoreHtmlClass: ".*|", processHtmlClass: "arithmatex" }
};
if (typeof document$ !== "undefined") {
  document$.subscribe(() => { if (window.MathJax.typesetPromise) { window.MathJax.typesetPromise(); } });
}
