// What every test script shares: a named check that ends the run on failure, and a deadline for the
// whole run. tests/realtime.rs and tests/browser.rs look for "all checks passed".

/** Prints `ok   name`, or `FAIL name: detail` and exits with 1. */
export function check(name, condition, detail) {
  if (!condition) {
    console.log(`FAIL ${name}${detail === undefined ? "" : `: ${JSON.stringify(detail)}`}`);
    process.exit(1);
  }
  console.log(`ok   ${name}`);
}

/** Fails the run if it is still going after `seconds`. */
export function deadline(seconds) {
  setTimeout(() => {
    console.log(`FAIL the run took longer than ${seconds} s`);
    process.exit(1);
  }, seconds * 1000).unref();
}
