"""Customers and their tickets, made through crm's and tickets' gRPC servers of a running stack."""

from __future__ import annotations

import grpc
from google.protobuf import struct_pb2
from hydra.crm.v1 import accounts_pb2, accounts_pb2_grpc, contacts_pb2, contacts_pb2_grpc
from hydra.tickets.v1 import tickets_pb2, tickets_pb2_grpc


def body(**values: str) -> struct_pb2.Struct:
    """A resource body, as the services' create and update requests carry it."""
    s = struct_pb2.Struct()
    s.update(values)
    return s


def create_customers(env: dict[str, str], md: tuple[tuple[str, str], ...], addresses: list[str]) -> list[str]:
    """One account in crm and a contact per address; their ids."""
    with grpc.insecure_channel(f"127.0.0.1:{env['HYDRA_CRM_PORT']}") as crm:
        account = (
            accounts_pb2_grpc.AccountServiceStub(crm)
            .CreateAccount(accounts_pb2.CreateAccountRequest(account=body(name="A")), metadata=md)
            .account
        )
        contacts = contacts_pb2_grpc.ContactServiceStub(crm)
        return [
            contacts.CreateContact(
                contacts_pb2.CreateContactRequest(contact=body(email=a, account_id=account.id)), metadata=md
            ).contact.id
            for a in addresses
        ]


def open_tickets(env: dict[str, str], md: tuple[tuple[str, str], ...], customers: list[str]) -> None:
    """A ticket per customer, through tickets' gRPC server."""
    with grpc.insecure_channel(f"127.0.0.1:{env['HYDRA_TICKETS_PORT']}") as channel:
        tickets = tickets_pb2_grpc.TicketServiceStub(channel)
        for customer in customers:
            tickets.CreateTicket(
                tickets_pb2.CreateTicketRequest(ticket=body(title="Help", customer_id=customer)), metadata=md
            )
