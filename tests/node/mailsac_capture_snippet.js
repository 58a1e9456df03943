// The Node.js example of Mailsac's Email Capture page, with only the host,
// port and credentials changed (taken from the environment so the test
// suite can point it at its own server). Capture's self-signed certificate
// is trusted the standard Node way: NODE_EXTRA_CA_CERTS=tls/localhost.pem.
const nodemailer = require("nodemailer");

async function main() {
  let transporter = nodemailer.createTransport({
    host: process.env.CAPTURE_HOST || "localhost",
    port: Number(process.env.CAPTURE_PORT || 5587),
    secure: false, // will use TLS by upgrading later in the connection with STARTTLS
    auth: {
      user: process.env.CAPTURE_USER,
      pass: process.env.CAPTURE_KEY,
    },
  });

  let info = await transporter.sendMail({
    from: '"Mywebapp Customer Support" <no-reply@mywebapp.com>',
    to: "mycustomer@gmail.com",
    subject: "Password reset",
    text: "Reset your password: https://mywebapp.com/password-reset/PasswordResetToken",
    html: "<p>Reset your password <a href=\"https://mywebapp.com/password-reset/PasswordResetToken\">here</a></p>",
  });
  console.log("response: '" + info.response + "'");
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
