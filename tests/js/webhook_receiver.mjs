// A webhook receiver written from the README's recipe alone: it verifies each delivery's
// X-Netia-Signature (hex HMAC-SHA256 of "<t>.<raw body>" under the subscription's secret, compared
// in constant time, t within 5 minutes) and exits after COUNT valid deliveries, failing on any
// invalid one. PORT, SECRET and COUNT come from the environment.
import http from "node:http";
import crypto from "node:crypto";

const secret = process.env.SECRET;
const wanted = Number(process.env.COUNT || "1");
let valid = 0;

function verified(header, rawBody) {
  const parts = Object.fromEntries(header.split(",").map((p) => p.split("=", 2)));
  const t = parts.t;
  const v1 = parts.v1 || "";
  const expected = crypto.createHmac("sha256", secret).update(t + "." + rawBody).digest();
  const given = Buffer.from(v1, "hex");
  const fresh = Math.abs(Date.now() / 1000 - Number(t)) <= 300;
  return fresh && given.length === expected.length && crypto.timingSafeEqual(given, expected);
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const raw = Buffer.concat(chunks).toString("utf8");
    const header = req.headers["x-netia-signature"] || "";
    if (!verified(header, raw)) {
      console.error("invalid signature:", header, raw);
      res.writeHead(400).end();
      process.exit(1);
    }
    const body = JSON.parse(raw);
    if (body.id !== req.headers["x-netia-delivery"]) {
      console.error("the delivery header does not name the body's id");
      process.exit(1);
    }
    valid += 1;
    console.log("verified", body.event, body.id);
    res.writeHead(204).end();
    if (valid >= wanted) {
      console.log("all checks passed");
      server.close();
      process.exit(0);
    }
  });
});
server.listen(Number(process.env.PORT), "127.0.0.1", () => console.log("listening"));
setTimeout(() => {
  console.error(`only ${valid} of ${wanted} deliveries in 60 s`);
  process.exit(1);
}, 60000);
