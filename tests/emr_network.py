"""A subnet a cluster may launch in, on moto: what ``fruits emr setup --subnet-id`` leaves behind.

``fruits emr create-cluster`` refuses a subnet that setup has not prepared
(:mod:`fruits.cloud.emr.network`); tests that launch on moto prepare one with the project's
own setup steps, not by imitating them.
"""

from __future__ import annotations


def prepared_subnet(cidr: str = "10.40.0.0/16", *, public: bool = True) -> str:
    """A new VPC and subnet on the moto server of the environment, prepared by setup's network steps.

    ``public``: the subnet's route table sends 0.0.0.0/0 to an internet gateway (else a private
    subnet, which also takes the service access group).
    """
    import boto3

    from fruits.cloud.emr import iam

    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=cidr.replace("/16", "/24"))["Subnet"]["SubnetId"]
    if public:
        gateway = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
        ec2.attach_internet_gateway(InternetGatewayId=gateway, VpcId=vpc)
        table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
        ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", GatewayId=gateway)
        ec2.associate_route_table(RouteTableId=table, SubnetId=subnet)
    iam.run(iam.network_steps(subnet, ec2), echo=lambda _: None)
    return subnet
