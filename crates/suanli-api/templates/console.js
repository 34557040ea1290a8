// The console's only script: a field with data-check is checked on the server as it is typed,
// and the verdict is shown in the element it is described by. Every form works without it.
document.querySelectorAll('input[data-check]').forEach(function (input) {
  var out = document.getElementById(input.getAttribute('aria-describedby'));
  var timer;
  input.addEventListener('input', function () {
    clearTimeout(timer);
    timer = setTimeout(function () {
      if (!input.value) { return; }
      fetch(input.getAttribute('data-check') + '?value=' + encodeURIComponent(input.value), { credentials: 'same-origin' })
        .then(function (response) { return response.json(); })
        .then(function (verdict) {
          out.textContent = verdict.message;
          out.className = verdict.ok ? 'pass' : 'fail';
        })
        .catch(function () {});
    }, 200);
  });
});
