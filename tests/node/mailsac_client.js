// Mailsac's official Node client (@mailsac/api) against Capture: only the
// base URL and the key change, as a user moving from mailsac.com would do.
// tests/test_official_clients.py runs this and checks the printed summary
// against the mail it sent.
//
// Environment: CAPTURE_API (base URL, ".../api"), CAPTURE_KEY, CAPTURE_INBOX
// (a public inbox holding the test's messages), CAPTURE_OWNED (an address to
// reserve and release), CAPTURE_DOMAIN_ADDRESS (an address in a custom domain
// of the key's account).
"use strict";

const { Mailsac } = require("@mailsac/api");

const inbox = process.env.CAPTURE_INBOX;
const owned = process.env.CAPTURE_OWNED;
const mailsac = new Mailsac({
  baseURL: process.env.CAPTURE_API,
  headers: { "Mailsac-Key": process.env.CAPTURE_KEY },
});
// The text routes are not JSON; without this axios would parse a body that
// happens to look like JSON.
const text = { format: "text" };

async function main() {
  const summary = {};
  const listed = (await mailsac.messages.listMessages(inbox, { limit: 50 })).data;
  summary.listed = listed.map((m) => ({ _id: m._id, subject: m.subject }));
  const id = listed[0]._id;

  summary.metadata = (await mailsac.messages.getMessageMetadata(inbox, id)).data;
  summary.text = (await mailsac.messages.getBodyPlainText(inbox, id, {}, text)).data;
  summary.raw = (await mailsac.messages.getFullRawMessage(inbox, id, {}, text)).data;
  summary.headers = (await mailsac.messages.getHeaders(inbox, id, {})).data;
  summary.headersOrdered = (
    await mailsac.messages.getHeaders(inbox, id, { messageHeadersFormat: "json-ordered" })
  ).data;

  summary.starred = (await mailsac.messages.toggleMessageStar(inbox, id)).data;
  summary.starredList = (await mailsac.messages.listStarredMessages()).data.map((m) => m._id);
  summary.unstarred = (await mailsac.messages.toggleMessageStar(inbox, id)).data;
  summary.starredAfter = (await mailsac.messages.listStarredMessages()).data.map((m) => m._id);

  summary.deleted = (await mailsac.messages.deleteMessage(inbox, id)).data;
  summary.listedAfterDelete = (await mailsac.messages.listMessages(inbox)).data.map((m) => m._id);
  summary.count = (await mailsac.messages.countMessages(inbox)).data;

  summary.availableBefore = (await mailsac.addresses.checkAvailability(owned)).data;
  summary.reserved = (await mailsac.addresses.createAddress(owned)).data;
  summary.addresses = (await mailsac.addresses.listAddresses()).data.map((a) => a._id);
  summary.address = (await mailsac.addresses.getAddress(owned)).data;
  summary.released = (await mailsac.addresses.deleteAddress(owned, {})).status;
  summary.addressesAfter = (await mailsac.addresses.listAddresses()).data.map((a) => a._id);

  const inDomain = process.env.CAPTURE_DOMAIN_ADDRESS;
  summary.domainAddress = (await mailsac.addresses.getAddress(inDomain)).data;
  summary.domainAddressUpdated = (
    await mailsac.addresses.updateAddress(inDomain, { enablews: true })
  ).data;

  summary.me = (await mailsac.account.user()).data;
  process.stdout.write(JSON.stringify(summary) + "\n");
}

main().catch((error) => {
  // An HTTP error from axios: say which call and what Capture answered.
  const response = error.response;
  const where = error.config ? `${error.config.method} ${error.config.url}` : "";
  process.stderr.write(
    `${where}: ${response ? response.status + " " + JSON.stringify(response.data) : error.stack}\n`,
  );
  process.exit(1);
});
